"""A property of the PAYG recharger (hypothesis), on the real stack: whatever a scripted Stripe answers (success,
decline, `authentication_required`, a 500 before or after it made the PaymentIntent — replayed for the same
idempotency key, as Stripe does —, a timeout before or after), with its webhooks late, duplicated or never sent,
and a top-up arriving at any moment, every recharge ends final, no recharge has two successful PaymentIntents, and
the balance is exactly the credits (top-ups, and every PaymentIntent Stripe says succeeded) minus the debits.

The recharger and the reconciler are driven here, pass by pass, on a clock that moves a few minutes a pass (so the
bounds are reached in seconds); the folds, the outbox relay, Kafka, Postgres and stripe-mock are the real ones.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from events.envelope import utcnow
from jobmeter.settings import Settings
from services.engine import runtime
from services.http.app import create_app
from services.payg.recharger import Recharger
from services.payg.reconciler import PaygReconciler
from services.platform.resources import Resources
from services.stripe_adapter.client import make_client
from tests.integration import test_payg
from tests.integration.helpers import client_for, eventually, fetchval
from tests.integration.payg_stripe_front import PaygFakeStripeFront, payg_fake_stripe_front
from tests.integration.test_payg import checkout_completed, publish, register, with_front
from tests.integration.test_payg_recharge_finality import configure, recharges
from tests.integration.test_payg_stripe_lookups import intent_event

pytestmark = pytest.mark.integration

payg_policy = test_payg.payg_policy  # autouse: the same PAYG prices and policy as test_payg

ACTIONS = ["pass", "500", "500_after", "timeout", "timeout_after", "card_declined", "authentication_required"]
FINAL = {"succeeded", "failed", "canceled"}
STEP = timedelta(minutes=3)
PASSES = 12  # webhooks and the top-up are scheduled among the first passes; the bounds end everything by ~10


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def front(settings: Settings) -> AsyncIterator[PaygFakeStripeFront]:
    async with payg_fake_stripe_front(settings.stripe_api_base) as f:
        f.created_status = "succeeded"  # an off-session card charge Stripe accepts is paid at once
        f.hang_seconds = 1.0
        yield f


async def _no_workers(res: Resources, schema: str) -> None:
    await asyncio.Event().wait()  # this test drives the recharger and the reconciler itself


def webhooks(front: PaygFakeStripeFront, customer: str) -> list[Any]:
    """Stripe's webhook for every PaymentIntent of the customer that reached a final status."""
    out = []
    for pi, f in front.intents.items():
        if f.get("customer") != customer or "recharge_id" not in f.get("metadata", {}):
            continue
        recharge = {"payment_intent_id": pi, "amount_minor": f["amount"], "recharge_id": f["metadata"]["recharge_id"]}
        if f["status"] == "succeeded":
            out.append(intent_event("payment_intent.succeeded", recharge, customer))
        elif f["status"] == "requires_payment_method":
            out.append(intent_event("payment_intent.payment_failed", recharge, customer))
    return out


async def test_every_recharge_ends_final_charged_at_most_once_and_the_balance_adds_up(
    settings: Settings, front: PaygFakeStripeFront, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(runtime.PROJECTION_WORKERS, "payg", _no_workers)
    s = with_front(settings, front).model_copy(update={"jobmeter_stripe_timeout_seconds": 0.5})
    app = create_app(s, consumers=["accounts", "payg"])
    loop = asyncio.get_running_loop()
    numbers = itertools.count()

    async with client_for(app) as client:
        pool = app.state.runtime.res.pool
        stripe_client = make_client(s)

        async def example(actions: list[str], deliveries: set[int], topup_at: int | None) -> None:
            n = next(numbers)
            account, customer = f"prop{n}", f"cus_PROP{n}"
            front.script.clear()
            front.script.extend(actions)
            await register(client, account, customer)
            await configure(client, account)  # 0 < 100: a recharge of 1000 is requested at once
            await eventually(lambda: recharges(s, account), bool)
            clock = Clock(utcnow())
            recharger = Recharger(pool, stripe_client, s, lease=timedelta(minutes=2), retry_after=timedelta(minutes=1),
                                  retry_max=timedelta(minutes=4), give_up=timedelta(minutes=20), clock=clock)
            reconciler = PaygReconciler(pool, stripe_client, settle_after=timedelta(minutes=5),
                                        give_up=timedelta(minutes=20), clock=clock)
            deadline = time.monotonic() + 60
            for step in itertools.count():
                if step == topup_at:
                    await publish(app, checkout_completed(account, f"cs_test_{account}", 500).model_copy(
                        update={"customer_id": customer}))
                if step in deliveries:  # every webhook so far, again: late, duplicated, in any order with the rest
                    await publish(app, *webhooks(front, customer))
                await recharger.charge_due()
                await reconciler.settle_overdue()
                rows = await recharges(s, account)
                if step >= PASSES and rows and all(r["state"] in FINAL for r in rows):
                    break
                assert time.monotonic() < deadline, ("not final", actions, deliveries, topup_at, rows)
                clock.now += STEP
                await asyncio.sleep(0.02)  # pace the passes; the folds run beside them

            # A marker top-up behind everything on the customer's partition: once it is in, so is all before it.
            marker = f"cs_test_marker_{account}"
            await publish(app, checkout_completed(account, marker, 1).model_copy(update={"customer_id": customer}))
            await eventually(lambda: fetchval(s, "SELECT count(*) FROM payg.movements WHERE movement_id = $1",
                                              f"checkout:{marker}"), lambda c: c == 1)

            rows = await recharges(s, account)
            assert rows and all(r["state"] in FINAL for r in rows), rows
            paid = 0
            for r in rows:
                succeeded = front.succeeded_for(r["recharge_id"])
                assert len(succeeded) <= 1, (r, succeeded)
                assert (r["state"] == "succeeded") == bool(succeeded), (r, succeeded, actions)
                if succeeded:
                    assert r["payment_intent_id"] == succeeded[0]
                    paid += front.intents[succeeded[0]]["amount"]
            balance = await fetchval(s, "SELECT balance_minor FROM payg.balances WHERE account_id = $1", account)
            moved = await fetchval(s, "SELECT sum(amount_minor) FROM payg.movements WHERE account_id = $1", account)
            topped = 500 if topup_at is not None else 0
            assert balance == moved == topped + 1 + paid, (balance, moved, topped, paid, rows, actions)

        @given(
            actions=st.lists(st.sampled_from(ACTIONS), max_size=5),
            deliveries=st.sets(st.integers(0, PASSES - 1), max_size=4),
            topup_at=st.none() | st.integers(0, PASSES - 1),
        )
        @hsettings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(actions: list[str], deliveries: set[int], topup_at: int | None) -> None:
            asyncio.run_coroutine_threadsafe(example(actions, deliveries, topup_at), loop).result(timeout=120)

        await asyncio.to_thread(check)
