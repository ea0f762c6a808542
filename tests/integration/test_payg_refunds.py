"""Refunds and disputes of PAYG top-ups on the real stack (Kafka, Postgres): Stripe-shaped events (built after
stripe-mock's charge and dispute fixtures), signed and posted to the webhook bridge, move the balance back once,
whatever the duplicates and the order, and a balance pushed below the allowance suspends the keys."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from events.registry import REGISTRY
from events.stripe import StripeEventReceived
from jobmeter.settings import Settings
from services.http.app import create_app
from services.stripe_adapter.fixtures import charge, dispute, encode_event, payment_event
from services.stripe_adapter.webhooks import sign
from tests.integration import test_payg
from tests.integration.helpers import ADMIN, applied_to_end, client_for, eventually, fetchval, read_to_end
from tests.integration.test_payg import balance, balance_is, job, publish, register
from tests.integration.test_payg_stripe_lookups import signed_checkout

pytestmark = pytest.mark.integration

payg_policy = test_payg.payg_policy  # autouse: allowance 50, extract = 5


async def post(client: httpx.AsyncClient, settings: Settings, body: bytes) -> None:
    secret = settings.stripe_webhook_secret.get_secret_value()
    answer = await client.post("/webhooks/stripe", content=body, headers={
        "Stripe-Signature": sign(body, secret), "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text


async def deliver(client: httpx.AsyncClient, settings: Settings, event_type: str, obj: dict[str, Any],
                  event_id: str | None = None) -> None:
    await post(client, settings, encode_event(payment_event(event_type, obj, event_id=event_id)))


async def moves(settings: Settings, kind: str) -> int:
    return int(await fetchval(settings, "SELECT count(*) FROM payg.movements WHERE kind = $1", kind))


async def test_refunds_and_disputes_move_the_balance_back_once_and_can_suspend_the_keys(settings: Settings) -> None:
    app = create_app(settings, consumers=["accounts", "payg", "keys"])  # the key store folds our key events
    async with client_for(app) as client:
        await register(client, "back", "cus_BACK")
        # A card on file and auto-recharge off: no card lookup, no recharge, only the movements under test.
        configured = await client.post("/v1/accounts/back/payg/config", headers=ADMIN, json={
            "auto_recharge": False, "payment_method_id": "pm_card_visa"})
        assert configured.status_code == 202, configured.text
        await eventually(lambda: balance(client, "back"), lambda b: b["payment_method_id"] == "pm_card_visa")
        await post(client, settings, signed_checkout("back", "cs_test_back1", 1000, "cus_BACK", "pi_back1"))
        await balance_is(client, "back", 1000)

        # A partial refund; the same delivery again, and the same total under another event id: one debit.
        partial = charge("pi_back1", amount=1000, amount_refunded=300, customer="cus_BACK")
        await deliver(client, settings, "charge.refunded", partial, event_id="evt_refund_300")
        await deliver(client, settings, "charge.refunded", partial, event_id="evt_refund_300")
        await deliver(client, settings, "charge.refunded", partial)
        await balance_is(client, "back", 700)
        # The rest refunded, then the older total delivered late: only the difference is debited.
        full = charge("pi_back1", amount=1000, amount_refunded=1000, customer="cus_BACK")
        await deliver(client, settings, "charge.refunded", full)
        await deliver(client, settings, "charge.refunded", partial)
        # Refunds and disputes of payments that credited no balance: ignored, not dead-lettered.
        await deliver(client, settings, "charge.refunded", charge("pi_elsewhere", amount=900, amount_refunded=900,
                                                                  customer="cus_BACK"))
        await deliver(client, settings, "charge.dispute.created", dispute("pi_elsewhere", amount=900))
        await applied_to_end(settings, "payg", "stripe")
        assert (await balance(client, "back"))["balance_minor"] == 0
        assert await moves(settings, "refund") == 2

        # A dispute won, its closing delivered before its opening: debited and given back, nothing in all.
        await post(client, settings, signed_checkout("back", "cs_test_back2", 500, "cus_BACK", "pi_back2"))
        await post(client, settings, signed_checkout("back", "cs_test_back3", 300, "cus_BACK", "pi_back3"))
        await balance_is(client, "back", 800)
        await deliver(client, settings, "charge.dispute.closed", dispute("pi_back2", amount=500, status="won"))
        await deliver(client, settings, "charge.dispute.created", dispute("pi_back2", amount=500))
        await deliver(client, settings, "charge.dispute.closed", dispute("pi_back2", amount=500, status="won"))
        await applied_to_end(settings, "payg", "stripe")
        assert (await balance(client, "back"))["balance_minor"] == 800
        assert await moves(settings, "dispute") == 2

        # 112 jobs of 5 leave 240, above the allowance; a lost dispute of 300 pushes it to -60: the keys stop.
        await publish(app, *[job("back", f"b{i}") for i in range(112)])
        shown = await balance_is(client, "back", 240)
        assert shown["keys_suspended"] is False
        await deliver(client, settings, "charge.dispute.created", dispute("pi_back3", amount=300))
        await balance_is(client, "back", -60)
        await eventually(lambda: balance(client, "back"), lambda b: b["keys_suspended"])
        suspended = "SELECT suspended FROM keys.suspensions WHERE account_id = 'back'"
        await eventually(lambda: fetchval(settings, suspended), lambda v: v is True)
        await deliver(client, settings, "charge.dispute.closed", dispute("pi_back3", amount=300, status="lost"))
        await applied_to_end(settings, "payg", "stripe")
        assert (await balance(client, "back"))["balance_minor"] == -60

    assert await moves(settings, "dispute") == 3
    assert await read_to_end(settings, "deadletters") == []
    # A dispute names no customer: the bridge gave it the one whose payment it reverses, so it sits on that
    # customer's partition, after the credit (a replay folds it in that order too); one of no credit has none.
    records = await read_to_end(settings, "stripe")
    events = [(r.partition, REGISTRY.decode(r.value)[1]) for r in records if r.value is not None]
    received = [(p, e) for p, e in events if isinstance(e, StripeEventReceived)]
    disputes = {e.data_object["payment_intent"]: (p, e) for p, e in received if e.type == "charge.dispute.created"}
    [topup_partition] = [p for p, e in received if e.data_object.get("payment_intent") == "pi_back3"
                         and e.type == "checkout.session.completed"]
    assert disputes["pi_back3"][1].customer_id == "cus_BACK" and disputes["pi_back3"][0] == topup_partition
    assert disputes["pi_elsewhere"][1].customer_id is None
