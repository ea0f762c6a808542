"""Stripe down for 30 seconds (15 s of 500s, then 15 s of requests held past the client's timeout), on the real
stack: the meter reporter and the PAYG recharger, running as the engine runs them, both finish once Stripe is back,
without ever retrying under an idempotency key Stripe saved a 500 for; then `jobmeter doctor`'s check lists
nothing, even an hour later, where during the outage it listed both. Stripe is stripe-mock behind the chaos run's
fault-injecting front (`services.devtools.chaos.stripe_faults`, a fake)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from jobmeter.settings import Settings
from services.devtools.chaos.stripe_faults import Mode, StripeFaults, stripe_faults
from services.engine.doctor import gather
from services.http.app import create_app
from services.meter import sender as meter_sender
from services.platform.resources import Resources
from tests.integration import test_payg
from tests.integration.helpers import ADMIN, client_for, eventually, fetchval
from tests.integration.test_payg import intent_succeeded, job, publish
from tests.integration.test_payg_recharge_finality import configure, recharges

pytestmark = pytest.mark.integration

payg_policy = test_payg.payg_policy  # autouse: the PAYG prices and policy test_payg uses
OUTAGE: list[tuple[Mode, float]] = [("500", 15.0), ("stall", 15.0)]


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """The engine's own retry paths, with waits of a second instead of 30 s (doubling) after a failed attempt."""
    monkeypatch.setattr(settings, "jobmeter_payg_recharge_retry_seconds", 0.5)
    monkeypatch.setattr(settings, "jobmeter_payg_recharge_retry_max_seconds", 2.0)
    made = meter_sender.sender_for

    def quick(res: Resources, schema: str = "meter", **kw: Any) -> meter_sender.MeterSender:
        sender = made(res, schema, **kw)
        sender.retry_after = timedelta(seconds=1)
        return sender

    monkeypatch.setattr(meter_sender, "sender_for", quick)


@pytest.fixture
async def front(settings: Settings) -> AsyncIterator[StripeFaults]:
    async with stripe_faults(settings.stripe_api_base, stall_seconds=2.0) as f:
        yield f


async def meter_reports(settings: Settings) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return [dict(r) for r in await conn.fetch("SELECT state, attempts, value FROM meter.reports")]
    finally:
        await conn.close()


async def test_meter_and_recharges_finish_after_stripe_fails_for_30_seconds(
    settings: Settings, front: StripeFaults
) -> None:
    s = settings.model_copy(update={
        "stripe_api_base": front.url, "jobmeter_stripe_timeout_seconds": 1.0, "jobmeter_meter_window_seconds": 2,
        "jobmeter_meter_lateness_seconds": 0.5, "jobmeter_meter_poll_seconds": 0.2,
        "jobmeter_meter_lease_seconds": 5.0, "jobmeter_payg_poll_seconds": 0.1,
    })
    front.fail_in_turn(OUTAGE)
    app = create_app(s, consumers=["accounts", "meter", "payg"])
    async with client_for(app) as client:
        for account, model, customer in (("subs", "subscription", "cus_OUTAGE1"), ("pay", "payg", "cus_OUTAGE2")):
            answer = await client.post("/v1/accounts", headers=ADMIN, json={
                "account_id": account, "model": model, "stripe_customer_id": customer})
            assert answer.status_code == 201, answer.text
        await configure(client, "pay")  # a balance of 0 below the threshold of 100: a recharge at once
        await publish(app, *[job("subs", f"s{n}") for n in range(7)])
        res: Resources = app.state.runtime.res

        # During the outage both have tried and failed, and the doctor's check, an hour on, lists both.
        await eventually(lambda: meter_reports(s), lambda rows: any(r["attempts"] >= 2 for r in rows))
        await eventually(lambda: recharges(s, "pay"), lambda rows: bool(rows) and rows[0]["attempts"] >= 2)
        assert front.failing() is not None  # still inside the outage: what follows shows the check can fail
        listed = {i.kind for i in await gather(res, datetime.now(UTC) + timedelta(hours=1))}
        assert {"meter-report-unsent", "payg-recharge-unsettled"} <= listed, listed

        # Stripe is back: the recharge is made (and paid, as Stripe then tells), the meter report sent.
        [sent] = await eventually(lambda: recharges(s, "pay"), lambda rows: rows[0]["payment_intent_id"] is not None,
                                  timeout=90)
        assert front.failing() is None
        await publish(app, intent_succeeded(sent))
        await eventually(lambda: recharges(s, "pay"), lambda rows: rows[0]["state"] == "succeeded")
        await eventually(lambda: meter_reports(s), lambda rows: bool(rows) and {r["state"] for r in rows} == {"sent"},
                         timeout=60)
        assert await gather(res, datetime.now(UTC) + timedelta(hours=1)) == []

    assert front.counts["500"] > 0 and front.counts["stall"] > 0, front.counts
    meter_posts = [(key, what) for method, path, key, what in front.seen if path == "/v1/billing/meter_events"]
    assert [what for _, what in meter_posts][-1] == "passed"
    assert {"500", "stall"} <= {what for _, what in meter_posts}
    assert len({key for key, _ in meter_posts}) == len(meter_posts)  # a fresh key for every request
    assert front.memory.replayed == 0  # nobody retried under a key whose 500 Stripe had saved
    assert await fetchval(s, "SELECT sum(value) FROM meter.reports WHERE state = 'sent'") == 7
