"""The billing side of a chaos run: subscription and PAYG accounts registered over HTTP before the traffic,
Stripe's part played for recharges (signed `payment_intent.succeeded` deliveries, each delivered twice), and the
figures the billing invariants are checked against, read from the meter and PAYG tables and the ledger."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from events.billing import MeterUsageReported
from events.registry import REGISTRY
from events.topics import Topics
from jobmeter.settings import Settings
from projections.ledger import queries as ledger_queries
from projections.log import LogReader
from projections.meter import queries as meter_queries
from projections.payg import queries as payg_queries
from services.devtools.chaos.invariants import (
    Invariant,
    Recharge,
    meter_identifiers_distinct,
    meter_sent_equals_ledger,
    payg_debits_equal_jobs_times_price,
    recharges_charged_once,
    recharges_final,
)
from services.devtools.databases import projection_connections
from services.devtools.demo.stripe_events import recharge_succeeded
from services.platform.poll import PollPolicy, poll
from services.stripe_adapter.fixtures import encode_event
from services.stripe_adapter.webhooks import sign

# Low enough that a PAYG account crosses it within seconds of traffic, so recharges happen during the faults.
PAYG_THRESHOLD_MINOR = 300
PAYG_RECHARGE_MINOR = 400
PAYMENT_METHOD = "pm_card_visa"  # stripe-mock accepts it for off-session PaymentIntents


def chaos_settings(settings: Settings) -> Settings:
    """Short meter windows and quick senders, so windows close and are sent within the run; short leases, so the
    reports a SIGKILLed sender held, and the recharges a recharger held when it was killed or lost Postgres, are sent
    again within the bound (the defaults, 5 and 2 minutes, would outlast it); recharges retried after Stripe's
    faults within the bound too (2 s doubling up to 8 s, not 30 s doubling up to 10 minutes); a price per API."""
    prices = ",".join(f"{api}={n % 5 + 2}" for n, api in enumerate(settings.jobmeter_apis))
    return settings.model_copy(update={
        "jobmeter_meter_window_seconds": 5, "jobmeter_meter_lateness_seconds": 1.0,
        "jobmeter_meter_poll_seconds": 0.5, "jobmeter_meter_lease_seconds": 15.0,
        "jobmeter_payg_poll_seconds": 0.5, "jobmeter_payg_lease_seconds": 15.0, "jobmeter_payg_prices": prices,
        "jobmeter_payg_recharge_retry_seconds": 2.0, "jobmeter_payg_recharge_retry_max_seconds": 8.0,
    })


@dataclass
class Population:
    """Who the workload bills: subscription accounts by Stripe customer, PAYG accounts, the rest unregistered."""

    customers: dict[str, str] = field(default_factory=dict)  # subscription account → cus_…
    payg: dict[str, str] = field(default_factory=dict)  # PAYG account → cus_…

    @classmethod
    def split(cls, accounts: list[str], run: str, subscription: int, payg: int) -> Population:
        customers = {a: f"cus_chaos{run}s{n}" for n, a in enumerate(accounts[:subscription])}
        return cls(customers, {a: f"cus_chaos{run}p{n}" for n, a in enumerate(accounts[subscription:][:payg])})


async def _admin(client: httpx.AsyncClient, method: str, url: str, token: str, body: dict[str, Any],
                 ok: tuple[int, ...], *, seconds: float = 60) -> httpx.Response:
    """Retry until one of the `ok` answers: the registry may not have folded an account yet (404)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            response = await client.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"})
            if response.status_code in ok:
                return response
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.TransportError as error:
            last = str(error)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{method} {url} did not succeed: {last}")
        await asyncio.sleep(0.3)


async def register(client: httpx.AsyncClient, settings: Settings, people: Population) -> None:
    """Subscription accounts with their Stripe customers; PAYG accounts with a card, a threshold and a recharge."""
    token = settings.jobmeter_admin_token.get_secret_value()
    for account, customer in people.customers.items():
        await _admin(client, "POST", "/v1/accounts", token,
                     {"account_id": account, "model": "subscription", "stripe_customer_id": customer}, (201, 202))
    for account, customer in people.payg.items():
        await _admin(client, "POST", "/v1/accounts", token,
                     {"account_id": account, "model": "payg", "stripe_customer_id": customer}, (201, 202))
    for account in people.payg:
        await _admin(client, "POST", f"/v1/accounts/{account}/payg/config", token,
                     {"threshold_minor": PAYG_THRESHOLD_MINOR, "recharge_minor": PAYG_RECHARGE_MINOR,
                      "auto_recharge": True, "payment_method_id": PAYMENT_METHOD}, (202,))


@dataclass
class StripeForRecharges:
    """Plays Stripe for the recharger's PaymentIntents: once one is made, its `payment_intent.succeeded` is
    delivered to the webhook bridge, then redelivered (same event id), then sent again as a second event (a new
    id for the same PaymentIntent) — the engine must credit it once."""

    settings: Settings
    delivered: set[str] = field(default_factory=set)
    deliveries: int = 0

    async def run(self, client: httpx.AsyncClient) -> None:
        """Until cancelled. While Postgres is being restarted a pass fails; `poll` looks again shortly (the
        back-off stays well inside the run's billing bound)."""

        async def one_pass() -> bool:
            conn = await asyncpg.connect(self.settings.database_url_for("payg"), timeout=5)
            try:
                rows = await payg_queries.recharges_awaiting_payment(conn)
            finally:
                await conn.close()
            for row in rows:
                if row["payment_intent_id"] not in self.delivered:
                    await self._settle(client, dict(row))
            return False

        await poll("chaos-stripe-recharges", one_pass, PollPolicy(idle=0.5, max_backoff=2.0))

    async def _settle(self, client: httpx.AsyncClient, recharge: dict[str, Any]) -> None:
        first = recharge_succeeded(recharge, recharge["customer_id"])
        second = {**first, "id": f"evt_chaos{secrets.token_hex(8)}"}
        for event in (first, first, second):
            await self._deliver(client, event)
        self.delivered.add(recharge["payment_intent_id"])

    async def _deliver(self, client: httpx.AsyncClient, event: dict[str, Any]) -> None:
        """Like Stripe: retry until the bridge answers 200 (it may be down, or answer 503 while Kafka is)."""
        body = encode_event(event)
        secret = self.settings.stripe_webhook_secret.get_secret_value()
        while True:
            headers = {"Stripe-Signature": sign(body, secret), "Content-Type": "application/json"}
            try:
                response = await client.post("/webhooks/stripe", content=body, headers=headers)
                if response.status_code == 200:
                    self.deliveries += 1
                    return
                if response.status_code < 500:
                    raise RuntimeError(f"the bridge refused {event['type']}: {response.status_code} {response.text}")
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)


async def meter_outbox_unsent(settings: Settings) -> int:
    """`MeterUsageReported` events recorded but not yet relayed to the bus."""
    conn = await asyncpg.connect(settings.database_url_for("meter"))
    try:
        return await meter_queries.outbox_unsent(conn)
    finally:
        await conn.close()


async def announced_meter_usage(settings: Settings) -> list[tuple[str, str, str, int, int]]:
    """(identifier, customer, window, seq, value) of every `MeterUsageReported` on the billing topic."""
    rows: list[tuple[str, str, str, int, int]] = []
    async with LogReader(settings.kafka_bootstrap_servers) as reader:
        async for batch in reader.read_to_end([Topics(settings.jobmeter_topic_prefix).name("billing")]):
            for record in batch:
                _, event = REGISTRY.decode(record.value or b"")
                if isinstance(event, MeterUsageReported):
                    rows.append((event.identifier, event.stripe_customer_id, event.window_start.isoformat(),
                                 event.seq, event.value))
    return rows


async def billing_invariants(settings: Settings, people: Population, prices: dict[str, int],
                             announced: list[tuple[str, str, str, int, int]] | None = None) -> list[Invariant]:
    """The meter and PAYG invariants, from the tables as they are now (and the meter usage the bus announced)."""
    # One snapshot for every read of a database: the PAYG fold credits a recharge and marks it succeeded in one
    # transaction, and reads taken a moment apart would see one without the other.
    async with projection_connections(settings, ("ledger", "meter", "payg"), snapshot=True) as conns:
        jobs = await ledger_queries.direct_jobs(conns["ledger"], [*people.customers, *people.payg])
        reports = await meter_queries.value_per_customer_and_state(conns["meter"])
        sent = await meter_queries.sent_reports(conns["meter"])
        debits = await payg_queries.debits(conns["payg"])
        recharges = await payg_queries.all_recharges(conns["payg"])
        credits = await payg_queries.recharge_credits(conns["payg"])
    ledger_by_customer = {c: sum(jobs.get(a, {}).values()) for a, c in people.customers.items()}
    sent_value = {r["customer_id"]: int(r["value"]) for r in reports if r["state"] == "sent"}
    unsent: dict[str, dict[str, int]] = {}
    for r in reports:
        if r["state"] != "sent":
            unsent.setdefault(r["customer_id"], {})[r["state"]] = int(r["value"])
    return [
        meter_sent_equals_ledger(ledger_by_customer, sent_value, unsent),
        meter_identifiers_distinct([(r["identifier"], r["customer_id"], r["window_start"].isoformat(), r["seq"],
                                     int(r["value"])) for r in sent] + (announced or [])),
        payg_debits_equal_jobs_times_price({a: jobs.get(a, {}) for a in people.payg}, prices, debits),
        recharges_charged_once([Recharge(**dict(r)) for r in recharges], credits),
        recharges_final([Recharge(**dict(r)) for r in recharges]),
    ]


async def hold_by(deadline: float, check: Callable[[], Awaitable[list[Invariant]]]) -> dict[str, float | None]:
    """Check every second until every invariant holds or `deadline` (monotonic) passes. Returns, per invariant,
    the seconds after the call from which it held to the end (None: it did not hold at the end): which one a run
    waited on."""
    started = time.monotonic()
    held_since: dict[str, float | None] = {}
    while True:
        found = await check()
        elapsed = round(time.monotonic() - started, 1)
        for invariant in found:
            if not invariant.holds:
                held_since[invariant.name] = None
            elif held_since.get(invariant.name) is None:
                held_since[invariant.name] = elapsed
        if all(i.holds for i in found) or time.monotonic() > deadline:
            return held_since
        await asyncio.sleep(1)
