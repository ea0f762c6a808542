"""What the PAYG reconciler asks Stripe, on the real stack (Kafka, Postgres, stripe-mock behind the PAYG fake front):
the card a top-up saved becomes the card on file; a recharge whose webhook never comes is settled by looking it up,
and the webhook arriving late afterwards changes nothing.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest

from jobmeter.settings import Settings
from services.http.app import create_app
from services.payg import reconciler as payg_reconciler
from services.stripe_adapter.webhooks import sign
from tests.integration import test_payg
from tests.integration.helpers import ADMIN, client_for, eventually, fetchval
from tests.integration.payg_stripe_front import PaygFakeStripeFront
from tests.integration.test_payg import (
    balance,
    balance_is,
    checkout_completed,
    emitted,
    form_of,
    job,
    publish,
    register,
    stripe_event,
    with_front,
)

pytestmark = pytest.mark.integration

payg_policy = test_payg.payg_policy  # autouse: the same PAYG prices and policy as test_payg


front = test_payg.front  # the PAYG fake Stripe front, as test_payg starts it


def signed_checkout(account: str, session: str, amount: int, customer: str, payment_intent: str) -> bytes:
    """A `checkout.session.completed` as Stripe delivers it for a top-up that saved the card."""
    obj = {"id": session, "object": "checkout.session", "mode": "payment", "payment_status": "paid",
           "amount_total": amount, "currency": "usd", "customer": customer, "payment_intent": payment_intent,
           "metadata": {"account_id": account, "purpose": "payg_topup"}, "client_reference_id": account}
    event = {"id": f"evt_{secrets.token_hex(8)}", "object": "event", "type": "checkout.session.completed",
             "created": int(time.time()), "livemode": False, "data": {"object": obj}}
    return json.dumps(event).encode()


def intent_event(kind: str, recharge: dict[str, Any], customer: str) -> Any:
    obj = {"id": recharge["payment_intent_id"], "object": "payment_intent", "amount": recharge["amount_minor"],
           "amount_received": recharge["amount_minor"] if kind.endswith("succeeded") else 0, "currency": "usd",
           "customer": customer, "metadata": {"recharge_id": recharge["recharge_id"]},
           "last_payment_error": None if kind.endswith("succeeded") else {"code": "card_declined", "message": "late"}}
    return stripe_event(kind, obj)


async def test_the_card_a_top_up_saved_is_on_file_and_charged_without_a_manual_configure(
    settings: Settings, front: PaygFakeStripeFront, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first lookup's result is lost in a crash before it is recorded: looked up again, saved once.
    real = payg_reconciler.PaygReconciler._capture_done
    crashes: list[str] = []

    async def dies_once(self: payg_reconciler.PaygReconciler, row: Any, *args: Any) -> None:
        if not crashes:
            crashes.append(row["payment_intent_id"])
            raise RuntimeError("process died after Stripe answered")
        await real(self, row, *args)

    monkeypatch.setattr(payg_reconciler.PaygReconciler, "_capture_done", dies_once)
    pi = f"pi_topup{secrets.token_hex(6)}"
    front.intents[pi] = {"status": "succeeded", "payment_method": "pm_card_mastercard", "customer": "cus_CARD"}
    s = with_front(settings, front).model_copy(update={"jobmeter_payg_lease_seconds": 1})
    app = create_app(s, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        await register(client, "card", "cus_CARD")
        assert (await balance(client, "card"))["payment_method_id"] is None
        body = signed_checkout("card", "cs_test_card1", 600, "cus_CARD", pi)
        answer = await client.post("/webhooks/stripe", content=body,
                                   headers={"Stripe-Signature": sign(body, "whsec_dev"),
                                            "Content-Type": "application/json"})
        assert answer.status_code == 200, answer.text
        shown = await eventually(lambda: balance(client, "card"), lambda b: b["payment_method_id"] is not None)
        assert (shown["payment_method_id"], shown["customer_id"]) == ("pm_card_mastercard", "cus_CARD")
        assert (shown["balance_minor"], shown["auto_recharge"]) == (600, True)  # nobody configured it: on
        assert crashes == [pi] and len(front.lookups(pi)) == 2

        # The same top-up delivered again (another event id): credited once, the card not looked up again.
        again = checkout_completed("card", "cs_test_card1", 600)
        await publish(app, again.model_copy(update={"data_object": {**again.data_object, "payment_intent": pi}}))
        # 21 jobs of 5: 600 → 495, below the default threshold of 500: one recharge on the saved card.
        await publish(app, *[job("card", f"c{i}") for i in range(21)])
        await balance_is(client, "card", 495)
        await eventually(lambda: _count(front), lambda n: n == 1)
        [intent] = front.payment_intents()
        form = form_of(intent.body)
        assert (form["customer"], form["payment_method"], form["amount"]) == ("cus_CARD", "pm_card_mastercard", "2000")
        assert len(front.lookups(pi)) == 2

    assert [(e.account_id, e.payment_method_id) for e in await emitted(s, "PaygCardSaved")] == [
        ("card", "pm_card_mastercard")]
    assert len(await emitted(s, "BalanceCredited")) == 1
    row = "SELECT sent_at IS NOT NULL AND saved_at IS NOT NULL FROM payg.card_captures WHERE payment_intent_id = $1"
    assert await fetchval(s, row, pi) is True


async def _count(front: PaygFakeStripeFront) -> int:
    return len(front.payment_intents())


async def _sent_recharge(client: Any, account: str) -> dict[str, Any]:
    shown = await eventually(
        lambda: balance(client, account), lambda b: b["recharges"] and b["recharges"][0]["payment_intent_id"]
    )
    return dict(shown["recharges"][0])


def settling_soon(settings: Settings, front: PaygFakeStripeFront) -> Settings:
    return with_front(settings, front).model_copy(update={"jobmeter_payg_settle_after_seconds": 1.0})


async def test_a_recharge_whose_webhook_never_comes_is_credited_once_from_stripe(
    settings: Settings, front: PaygFakeStripeFront
) -> None:
    s = settling_soon(settings, front)
    app = create_app(s, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        await register(client, "late", "cus_LATE")
        configured = await client.post("/v1/accounts/late/payg/config", headers=ADMIN, json={
            "threshold_minor": 100, "recharge_minor": 2000, "auto_recharge": True, "payment_method_id": "pm_card_visa"})
        assert configured.status_code == 202, configured.text
        recharge = await _sent_recharge(client, "late")  # 0 < 100: requested at once, and sent
        pi = recharge["payment_intent_id"]
        # Still processing at Stripe: looked up after the settle time, and left in flight.
        await eventually(lambda: _lookups(front, pi), lambda n: n >= 1)
        shown = await balance(client, "late")
        assert (shown["balance_minor"], shown["recharge_in_flight"]) == (0, True)

        front.settle(pi, "succeeded")  # no webhook comes: the next lookup finds the money
        settled = await balance_is(client, "late", 2000)
        assert settled["recharge_in_flight"] is False and settled["recharges"][0]["state"] == "succeeded"

        # The webhook, late, twice; then a top-up after it in the customer's order on the Stripe topic.
        late = intent_event("payment_intent.succeeded", recharge, "cus_LATE")
        await publish(app, late, late, checkout_completed("late", "cs_test_late1", 300).model_copy(
            update={"customer_id": "cus_LATE"}))
        await balance_is(client, "late", 2300)  # not 4300

    credits = await emitted(s, "BalanceCredited")
    assert sorted((c.source, c.reference, c.amount_minor) for c in credits) == [
        ("recharge", pi, 2000), ("topup", "cs_test_late1", 300)]
    assert len(await emitted(s, "RechargeSucceeded")) == 1
    assert [(c.recharge_id, c.amount_minor) for c in await emitted(s, "RechargeConfirmed")] == [
        (recharge["recharge_id"], 2000)]
    assert len(front.payment_intents()) == 1


async def _lookups(front: PaygFakeStripeFront, pi: str) -> int:
    return len(front.lookups(pi))


@pytest.mark.parametrize(("status", "code"), [("requires_payment_method", "card_declined"), ("canceled", None)])
async def test_a_recharge_found_failed_at_stripe_takes_the_failure_path(
    settings: Settings, front: PaygFakeStripeFront, status: str, code: str | None
) -> None:
    s = settling_soon(settings, front)
    app = create_app(s, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        await register(client, "lost", "cus_LOST")
        configured = await client.post("/v1/accounts/lost/payg/config", headers=ADMIN, json={
            "threshold_minor": 100, "recharge_minor": 1000, "auto_recharge": True, "payment_method_id": "pm_card_visa"})
        assert configured.status_code == 202, configured.text
        recharge = await _sent_recharge(client, "lost")
        pi = recharge["payment_intent_id"]
        if code is None:
            front.settle(pi, status)
            front.intents[pi]["last_payment_error"] = None  # canceled: no card error to tell
        else:
            front.settle(pi, status, code=code)
        failed = await eventually(lambda: balance(client, "lost"), lambda b: b["failures"] == 1)
        assert failed["recharges"][0]["state"] == "failed" and failed["recharges"][0]["failure_code"] == code
        assert failed["recharge_in_flight"] is False and failed["backoff_until"] is not None
        notice = await eventually(
            lambda: fetchval(s, "SELECT detail FROM payg.notifications WHERE account_id = 'lost'"), lambda d: d
        )
        assert recharge["recharge_id"] in notice

        # Stripe's own failure webhook, late: the same failure, counted once.
        await publish(app, intent_event("payment_intent.payment_failed", recharge, "cus_LOST"),
                      checkout_completed("lost", "cs_test_lost1", 50).model_copy(update={"customer_id": "cus_LOST"}))
        after = await balance_is(client, "lost", 50)
        assert after["failures"] == 1

    [fact] = await emitted(s, "RechargeFailed")
    assert (fact.recharge_id, fact.payment_intent_id, fact.code) == (recharge["recharge_id"], pi, code)
    assert await emitted(s, "RechargeConfirmed") == []
