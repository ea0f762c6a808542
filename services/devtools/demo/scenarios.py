"""The demo's three Stripe stories, each ending in a one-line check: a mid-period upgrade (proration previewed,
then applied), a PAYG balance that crosses its threshold and is recharged, and a subscriber whose final payment
fails, whose key the gateway then refuses, and who comes back when the invoice is paid."""

from __future__ import annotations

import time
from typing import Any

import httpx

from projections.payg import queries as payg_queries
from projections.subscriptions import queries as subscription_queries
from services.devtools.demo.engine import DemoEngine, eventually
from services.devtools.demo.population import CROSSER_THRESHOLD_MINOR, balance
from services.devtools.demo.results import DemoResult, money
from services.devtools.demo.stripe_events import deliver, recharge_succeeded, subscription
from services.devtools.demo.traffic import one_job
from services.devtools.demo.workload import Population
from services.stripe_adapter.client import make_client
from services.stripe_adapter.fixtures import build_event
from services.stripe_adapter.simulation import CONSOLE_PREFIX, simulated_event_id


async def upgrade(engine: DemoEngine, admin: httpx.AsyncClient, people: Population, result: DemoResult) -> None:
    """Pro monthly → Pro annual three days into the period: preview the proration, apply it with the same
    proration date, and let Stripe's `customer.subscription.updated` bring the engine's view along."""
    s, m = engine.settings, people.upgrader
    monthly, annual, overage = (str(s.stripe_pro_price_id), str(s.stripe_pro_annual_price_id),
                                str(s.stripe_metered_overage_price_id))
    made = await make_client(s).v1.subscriptions.create_async(
        {"customer": str(m.customer_id), "items": [{"price": monthly}, {"price": overage}]}
    )
    now = int(time.time())
    await deliver(admin, s, subscription("customer.subscription.created", made.id, str(m.customer_id), monthly,
                                         "month", overage, created=now - 60))
    preview = await admin.post(f"/v1/subscriptions/{made.id}/preview", json={"to": "pro_annual"})
    if preview.status_code != 200:
        result.check("upgrade mid-period", False, f"preview refused: {preview.status_code} {preview.text}")
        return
    seen = preview.json()
    change = await admin.post(f"/v1/subscriptions/{made.id}/change",
                              json={"to": "pro_annual", "proration_date": seen["proration_date"]})
    await deliver(admin, s, subscription("customer.subscription.updated", made.id, str(m.customer_id), annual,
                                         "year", overage, created=now, previous={"items": {"data": []}}))

    async def plan() -> str | None:
        async with engine.res.pool_for("subscriptions").acquire() as conn:
            return await subscription_queries.base_price(conn, made.id)

    on, folded = await eventually(plan, lambda p: p == annual, timeout=15)
    currency = str(seen["currency"])
    result.check(
        "upgrade mid-period", change.status_code == 200 and folded and isinstance(seen["proration_amount"], int),
        f"{m.account_id}: preview proration {money(seen['proration_amount'], currency)} (next invoice "
        f"{money(seen['amount_due'], currency)}); change {change.status_code}; engine shows {made.id} on {on}",
    )


async def payg_recharge(engine: DemoEngine, admin: httpx.AsyncClient, people: Population, result: DemoResult,
                        funded_minor: int) -> None:
    """The crosser's traffic took its balance below the threshold: the recharger charged the saved card off
    session (stripe-mock); Stripe's `payment_intent.succeeded` credits it."""
    m = people.payg_crosser
    jobs = sum(1 for account in result.completed.values() if account == m.account_id)

    async def debits() -> int:
        async with engine.res.pool_for("payg").acquire() as conn:
            return await payg_queries.debit_count(conn, m.account_id)

    await eventually(debits, lambda n: n >= jobs, timeout=20)
    low, sent = await eventually(lambda: balance(admin, m.account_id),
                                 lambda b: any(r["payment_intent_id"] for r in b["recharges"]), timeout=20)
    if not sent:
        shown = money(low["balance_minor"])
        result.check("PAYG recharge", False, f"{m.account_id}: no recharge sent (balance {shown})")
        return
    recharge: dict[str, Any] = low["recharges"][0]
    await deliver(admin, engine.settings, recharge_succeeded(recharge, m.customer_id))
    expected = low["balance_minor"] + recharge["amount_minor"]
    after, credited = await eventually(lambda: balance(admin, m.account_id),
                                       lambda b: b["balance_minor"] == expected, timeout=20)
    state = after["recharges"][0]["state"]
    result.check(
        "PAYG recharge", credited and low["balance_minor"] < CROSSER_THRESHOLD_MINOR and state == "succeeded",
        f"{m.account_id}: {money(funded_minor)} → {money(low['balance_minor'])} after {jobs} jobs (threshold "
        f"{money(CROSSER_THRESHOLD_MINOR)}) → {recharge['payment_intent_id']} {money(recharge['amount_minor'])} "
        f"({state}) → {money(after['balance_minor'])}",
    )


async def dunning(engine: DemoEngine, admin: httpx.AsyncClient, gateway: httpx.AsyncClient, people: Population,
                  result: DemoResult) -> None:
    """A final `invoice.payment_failed` (no next attempt) suspends the subscriber's key at the gateway;
    `invoice.paid` for the same invoice brings it back."""
    s, m = engine.settings, people.dunned
    api = engine.settings.jobmeter_apis[0]
    before, _ = await one_job(gateway, m, api, s, result.completed)
    now = int(time.time())
    failed = build_event("invoice.payment_failed", str(m.customer_id), final=True, created=now - 30,
                         event_id=simulated_event_id(CONSOLE_PREFIX))
    await deliver(admin, s, failed)
    started = time.monotonic()
    (refused, body), suspended = await eventually(lambda: one_job(gateway, m, api, s, result.completed),
                                                  lambda r: r[0] in (401, 403), timeout=15, every=0.1)
    suspended_after = time.monotonic() - started
    result.refused += 1 if suspended else 0
    paid = build_event("invoice.paid", str(m.customer_id), created=now - 10,
                       event_id=simulated_event_id(CONSOLE_PREFIX))
    paid["data"]["object"]["id"] = failed["data"]["object"]["id"]
    await deliver(admin, s, paid)
    started = time.monotonic()
    outcomes: list[int] = []

    async def attempt() -> int:
        status = (await one_job(gateway, m, api, s, result.completed))[0]
        outcomes.append(status)
        return status

    back, restored = await eventually(attempt, lambda status: status == 200, timeout=15, every=0.1)
    result.refused += sum(1 for o in outcomes if o in (401, 403))
    reason = body.get("reason") or body.get("detail") or body.get("state")
    result.check(
        "payment failure and recovery", before == 200 and refused == 403 and back == 200,
        f"{m.account_id}: key {before} → final payment failed → gateway {refused} ({body.get('state')}: {reason}) "
        f"after {suspended_after:.1f}s → invoice.paid → {back} after {time.monotonic() - started:.1f}s",
    )
