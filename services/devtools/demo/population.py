"""Bringing the demo's customers into existence as a user would: Stripe customers (stripe-mock), accounts and
keys over the engine's admin API, PAYG balances topped up through Checkout and its signed webhook, then recharge
settings with a saved card. Marketplace users need none of this: the gateway's RapidAPI middleware creates them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx

from services.devtools.demo.engine import DemoEngine, eventually
from services.devtools.demo.stripe_events import deliver, topup_paid
from services.devtools.demo.workload import Member, Population
from services.stripe_adapter.client import make_client

CARD = "pm_card_visa"  # a saved card stripe-mock accepts
FUNDS_MINOR = 5000  # a regular PAYG account's top-up: more than its traffic costs
CROSSER_FUNDS_MINOR = 300  # the scenario account's: its traffic takes it below the threshold
CROSSER_THRESHOLD_MINOR = 100
THRESHOLD_MINOR = 500
RECHARGE_MINOR = 2000


async def each(items: Iterable[Member], work: Callable[[Member], Awaitable[None]], limit: int = 16) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(item: Member) -> None:
        async with gate:
            await work(item)

    await asyncio.gather(*(one(i) for i in items))


def _ok(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    if response.status_code not in statuses:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {response.text}")
    return dict(response.json())


async def create_customers(engine: DemoEngine, people: Population) -> None:
    stripe = make_client(engine.settings)

    async def customer(m: Member) -> None:
        made = await stripe.v1.customers.create_async(
            {"email": f"billing@{m.account_id}.example", "metadata": {"account_id": m.account_id}}
        )
        m.customer_id = made.id

    await each([m for m in people.members if m.direct], customer)


async def register(admin: httpx.AsyncClient, people: Population) -> None:
    async def one(m: Member) -> None:
        body = {"account_id": m.account_id, "model": m.model, "stripe_customer_id": m.customer_id,
                "display_name": f"Demo {m.model} {m.account_id[-2:]}"}
        _ok(await admin.post("/v1/accounts", json=body), 201, 202)

    await each([m for m in people.members if m.direct], one)


async def issue_keys(admin: httpx.AsyncClient, people: Population) -> None:
    """A key per direct account, and wait until the key check knows each one."""
    async def one(m: Member) -> None:
        m.key = str(_ok(await admin.post("/v1/keys", json={"account_id": m.account_id}), 201)["key"])
        bearer = {"Authorization": f"Bearer {m.key}"}

        async def check() -> int:
            return (await admin.get("/v1/keys/check", headers=bearer)).status_code

        status, ok = await eventually(check, lambda s: s == 200, timeout=15, every=0.1)
        if not ok:
            raise RuntimeError(f"the key of {m.account_id} is not usable: key check answered {status}")

    await each([m for m in people.members if m.direct], one)


async def balance(admin: httpx.AsyncClient, account_id: str) -> dict[str, Any]:
    return _ok(await admin.get(f"/v1/accounts/{account_id}/balance"), 200)


async def fund_payg(engine: DemoEngine, admin: httpx.AsyncClient, people: Population) -> None:
    """Top each PAYG account up through a Checkout Session (completed by its signed webhook), then turn on
    auto-recharge with a saved card and a threshold."""
    async def one(m: Member) -> None:
        crosser = m is people.payg_crosser
        amount = CROSSER_FUNDS_MINOR if crosser else FUNDS_MINOR
        session = _ok(await admin.post(f"/v1/accounts/{m.account_id}/payg/topup", json={"amount_minor": amount}),
                      201)
        paid = topup_paid(m.account_id, m.customer_id, str(session["checkout_session_id"]), amount,
                          str(session["currency"]))
        await deliver(admin, engine.settings, paid)
        found, ok = await eventually(lambda: balance(admin, m.account_id), lambda b: b["balance_minor"] == amount,
                                     timeout=15)
        if not ok:
            raise RuntimeError(f"the top-up of {m.account_id} was not credited (balance {found['balance_minor']})")
        config = {"threshold_minor": CROSSER_THRESHOLD_MINOR if crosser else THRESHOLD_MINOR,
                  "recharge_minor": RECHARGE_MINOR, "auto_recharge": True, "payment_method_id": CARD}
        _ok(await admin.post(f"/v1/accounts/{m.account_id}/payg/config", json=config), 202)
        await eventually(lambda: balance(admin, m.account_id), lambda b: bool(b["auto_recharge"]), timeout=15)

    await each(people.of("payg"), one)
