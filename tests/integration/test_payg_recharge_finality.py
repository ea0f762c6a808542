"""A PAYG recharge always ends, on the real stack (Kafka, Postgres, stripe-mock behind `PaygFakeStripeFront`, which
answers Stripe's 500s, replayed per idempotency key as Stripe replays them).

Recharges are read from the database here, not through GET /balance, whose model does not know `canceled` yet.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from events.payg import recharge_attempt_key
from jobmeter.settings import Settings
from services.engine import runtime
from services.http.app import create_app
from services.payg import recharger as payg_recharger
from services.platform.resources import Resources
from tests.integration import test_payg
from tests.integration.helpers import ADMIN, client_for, eventually, fetchval
from tests.integration.payg_stripe_front import PaygFakeStripeFront
from tests.integration.test_payg import (
    checkout_completed,
    emitted,
    intent_succeeded,
    job,
    publish,
    register,
    with_front,
)

pytestmark = pytest.mark.integration

payg_policy = test_payg.payg_policy  # autouse: the same PAYG prices and policy as test_payg


front = test_payg.front  # the PAYG fake Stripe front, as test_payg starts it


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """Transient errors retried within a second (the production waits are 30 s doubling to 10 min)."""
    monkeypatch.setattr(settings, "jobmeter_payg_recharge_retry_seconds", 0.2)
    monkeypatch.setattr(settings, "jobmeter_payg_recharge_retry_max_seconds", 0.5)


async def recharges(settings: Settings, account: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch("SELECT * FROM payg.recharges WHERE account_id = $1 ORDER BY seq", account)
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def configure(client: Any, account: str, **body: Any) -> None:
    answer = await client.post(f"/v1/accounts/{account}/payg/config", headers=ADMIN, json={
        "threshold_minor": 100, "recharge_minor": 1000, "auto_recharge": True, "payment_method_id": "pm_card_visa",
        **body})
    assert answer.status_code == 202, answer.text


def ended(rows: list[dict[str, Any]]) -> bool:
    return bool(rows) and rows[0]["state"] != "requested"


def is_sent(rows: list[dict[str, Any]]) -> bool:
    return bool(rows) and rows[0]["payment_intent_id"] is not None


def balance_sql(account: str) -> str:
    return f"SELECT balance_minor FROM payg.balances WHERE account_id = '{account}'"


async def test_a_500_is_followed_by_success_under_a_new_key_and_the_card_is_charged_once(
    settings: Settings, front: PaygFakeStripeFront
) -> None:
    # Stripe fails the first request (nothing made) and saves its 500 under the request's idempotency key: the same
    # key would get that 500 back for 24 hours, so only a later attempt under a new key can succeed.
    front.script.extend(["500"])
    s = with_front(settings, front)
    app = create_app(s, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        await register(client, "five", "cus_FIVE")
        await configure(client, "five")  # 0 < 100: a recharge at once
        [sent] = await eventually(lambda: recharges(s, "five"), is_sent)
        rid = sent["recharge_id"]
        first, second = front.payment_intents()
        assert (first.idempotency_key, second.idempotency_key) == (recharge_attempt_key(rid, 1),
                                                                   recharge_attempt_key(rid, 2))
        assert first.body == second.body
        # Before the second attempt the recharger looked for a PaymentIntent the first might have made.
        lists = [x for x in front.seen if x.method == "GET" and x.path == "/v1/payment_intents"]
        assert len(lists) == 1 and front.seen.index(lists[0]) < front.seen.index(second)
        assert front.succeeded_for(rid) == [] and sent["attempts"] == 2 and sent["last_error"] is None

        await publish(app, intent_succeeded({**sent, "amount_minor": 1000}))
        await eventually(lambda: fetchval(s, balance_sql("five")), lambda b: b == 1000)
    [done] = await recharges(s, "five")
    assert done["state"] == "succeeded"
    assert len(await emitted(s, "RechargeSucceeded")) == 1


async def test_a_crash_after_stripe_made_the_payment_intent_is_found_not_charged_again(
    settings: Settings, front: PaygFakeStripeFront, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = payg_recharger.Recharger.record_sent
    crashes: list[str] = []

    async def dies_once(self: payg_recharger.Recharger, row: Any, payment_intent_id: str) -> None:
        if not crashes:
            crashes.append(payment_intent_id)
            raise RuntimeError("process died after Stripe created the PaymentIntent")
        await real(self, row, payment_intent_id)

    monkeypatch.setattr(payg_recharger.Recharger, "record_sent", dies_once)
    s = with_front(settings, front).model_copy(update={"jobmeter_payg_lease_seconds": 0.5})
    app = create_app(s, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        await register(client, "crash2", "cus_CRASH2")
        await configure(client, "crash2")
        [sent] = await eventually(lambda: recharges(s, "crash2"), is_sent)
    [only] = front.payment_intents()
    assert only.idempotency_key == recharge_attempt_key(sent["recharge_id"], 1)
    assert crashes == [sent["payment_intent_id"]] and sent["attempts"] == 2  # found by the second attempt


async def test_a_recharge_no_longer_needed_is_canceled_and_the_next_one_is_charged(
    settings: Settings, front: PaygFakeStripeFront
) -> None:
    front.script.extend(["500"] * 1000)  # Stripe keeps failing until the customer tops up
    s = with_front(settings, front)
    app = create_app(s, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        await register(client, "topped", "cus_TOPPED")
        await configure(client, "topped")
        await eventually(lambda: _count(front), lambda n: n >= 1)
        await publish(app, checkout_completed("topped", "cs_test_topped", 300).model_copy(
            update={"customer_id": "cus_TOPPED"}))  # 300 ≥ 100: the recharge in flight is not needed any more
        [canceled] = await eventually(lambda: recharges(s, "topped"), ended)
        assert (canceled["state"], canceled["cancel_reason"], canceled["payment_intent_id"]) == (
            "canceled", "not_needed", None)
        tried = len(front.payment_intents())
        assert front.succeeded_for(canceled["recharge_id"]) == []
        assert await fetchval(s, "SELECT failures FROM payg.balances WHERE account_id = 'topped'") == 0

        # Below the threshold again: the account recharges (it is not blocked by the canceled one).
        front.script.clear()
        await publish(app, *[job("topped", f"t{i}") for i in range(41)])  # 300 - 205 = 95 < 100
        both = await eventually(lambda: recharges(s, "topped"),
                                lambda rs: len(rs) == 2 and rs[1]["payment_intent_id"] is not None)
        assert both[1]["seq"] == 2 and both[1]["state"] == "requested"
        assert len(front.payment_intents()) == tried + 1

    assert await fetchval(s, "SELECT count(*) FROM payg.notifications WHERE account_id = 'topped'") == 0
    assert await emitted(s, "RechargeFailed") == []
    [fact] = await emitted(s, "RechargeCanceled")
    assert (fact.recharge_id, fact.reason) == (canceled["recharge_id"], "not_needed")


async def test_stripe_failing_past_the_bound_ends_the_recharge_failed_and_backs_off(
    settings: Settings, front: PaygFakeStripeFront
) -> None:
    front.script.extend(["500"] * 1000)
    s = with_front(settings, front).model_copy(update={"jobmeter_payg_recharge_give_up_seconds": 2.0})
    app = create_app(s, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        await register(client, "down", "cus_DOWN")
        await configure(client, "down")
        [failed] = await eventually(lambda: recharges(s, "down"), ended)
        assert (failed["state"], failed["failure_code"]) == ("failed", "unreachable")
        assert "APIError" in (failed["last_error"] or "")
        await eventually(lambda: fetchval(s, "SELECT failures FROM payg.balances WHERE account_id = 'down'"),
                         lambda n: n == 1)
        keys = [x.idempotency_key for x in front.payment_intents()]
        assert len(keys) == len(set(keys)) >= 2  # every attempt under its own key
    [fact] = await emitted(s, "RechargeFailed")
    assert (fact.recharge_id, fact.code) == (failed["recharge_id"], "unreachable")


async def test_the_wait_after_transient_errors_doubles_only_up_to_its_setting(
    settings: Settings, front: PaygFakeStripeFront
) -> None:
    # 0.2 s doubling would wait 3.2 s after a fifth 500; JOBMETER_PAYG_RECHARGE_RETRY_MAX_SECONDS (0.5 here) caps it.
    front.script.extend(["500"] * 1000)
    s = with_front(settings, front).model_copy(update={"jobmeter_payg_lease_seconds": 120.0})
    assert s.jobmeter_payg_recharge_retry_max_seconds == 0.5

    def postponed_after_five(rows: list[dict[str, Any]]) -> bool:  # not a claim in flight: those hold the lease
        if not rows or rows[0]["claimed_until"] is None:
            return False
        return bool(rows[0]["attempts"] >= 5 and rows[0]["claimed_until"] < datetime.now(UTC) + timedelta(seconds=60))

    app = create_app(s, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        await register(client, "capped", "cus_CAPPED")
        await configure(client, "capped")
        [row] = await eventually(lambda: recharges(s, "capped"), postponed_after_five)
    assert row["claimed_until"] < datetime.now(UTC) + timedelta(seconds=1), row


async def _count(front: PaygFakeStripeFront) -> int:
    return len(front.payment_intents())


async def _no_workers(res: Resources, schema: str) -> None:
    await asyncio.Event().wait()  # the test drives the recharger itself


@pytest.mark.parametrize("charged_before", [False, True])
async def test_a_recharge_recorded_from_old_history_is_looked_up_and_never_charged_anew(
    settings: Settings, front: PaygFakeStripeFront, monkeypatch: pytest.MonkeyPatch, charged_before: bool
) -> None:
    monkeypatch.setitem(runtime.PROJECTION_WORKERS, "payg", _no_workers)
    s = with_front(settings, front)
    app = create_app(s, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        await register(client, "hist", "cus_HIST")
        await configure(client, "hist")
        [row] = await eventually(lambda: recharges(s, "hist"), bool)
        rid = row["recharge_id"]
        # The fold recorded it now from jobs logged 7 hours ago: a consumer that far behind, or the log folded
        # again from the start (same recharge id as the first time).
        await fetchval(s, "UPDATE payg.recharges SET requested_at = requested_at - interval '7 hours' "
                          "WHERE recharge_id = $1", rid)
        earlier = "pi_earlierlife1"
        if charged_before:  # the first life of the fold charged it: Stripe has its PaymentIntent
            front.intents[earlier] = {"amount": 1000, "currency": "usd", "customer": "cus_HIST",
                                      "status": "succeeded", "metadata": {"recharge_id": rid},
                                      "created": int(time.time()) - 7 * 3600}  # when the jobs were logged
        recharger = payg_recharger.recharger_for(app.state.runtime.res)
        assert (await recharger.charge_due()).claimed == 1
        assert front.payment_intents() == []  # never created anew
        if charged_before:
            [found] = await recharges(s, "hist")
            assert (found["payment_intent_id"], found["state"]) == (earlier, "requested")  # the reconciler settles it
            return
        # Not found at Stripe: canceled as stale; the fold decides again at the cancellation's (current) log time.
        both = await eventually(lambda: recharges(s, "hist"), lambda rs: len(rs) == 2)
        assert (both[0]["state"], both[0]["cancel_reason"]) == ("canceled", "stale")
        assert (await recharger.charge_due()).sent == 1
        [made] = front.payment_intents()
        assert made.idempotency_key == recharge_attempt_key(both[1]["recharge_id"], 1)
    assert await fetchval(s, "SELECT failures FROM payg.balances WHERE account_id = 'hist'") == 0
