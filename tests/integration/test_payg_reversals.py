"""Refunds and disputes that arrive before the credit they reverse, and a recharge's refund, on the real stack
(Kafka, Postgres, stripe-mock behind `PaygFakeStripeFront`): Stripe-shaped events, signed and posted to the webhook
route. A refund or dispute folded first waits (`payg.parked_reversals`) and moves the balance once the credit is
folded, exactly once under duplicates; every movement is one `BalanceReversed` on the bus."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from events.payg import BalanceReversed
from events.registry import REGISTRY
from jobmeter.settings import Settings
from services.http.app import create_app
from services.stripe_adapter.fixtures import charge, dispute, encode_event, payment_event
from tests.integration import test_payg
from tests.integration.helpers import ADMIN, applied_to_end, client_for, eventually, fetchval, read_to_end
from tests.integration.payg_stripe_front import PaygFakeStripeFront
from tests.integration.test_payg import balance, balance_is, job, publish, register, with_front
from tests.integration.test_payg_recharge_finality import configure, is_sent, recharges
from tests.integration.test_payg_refunds import deliver, moves, post
from tests.integration.test_payg_stripe_lookups import signed_checkout

pytestmark = pytest.mark.integration

payg_policy = test_payg.payg_policy  # autouse: allowance 50, extract = 5
front = test_payg.front  # the PAYG fake Stripe front, as test_payg starts it


async def parked(settings: Settings) -> int:
    return int(await fetchval(settings, "SELECT count(*) FROM payg.parked_reversals"))


async def on_the_bus(settings: Settings) -> list[BalanceReversed]:
    """Every BalanceReversed the relay published so far."""
    decoded = [REGISTRY.decode(r.value)[1] for r in await read_to_end(settings, "payg") if r.value is not None]
    return [e for e in decoded if isinstance(e, BalanceReversed)]


async def all_published(settings: Settings) -> None:
    unsent = "SELECT count(*) FROM payg.outbox WHERE sent_at IS NULL"
    await eventually(lambda: fetchval(settings, unsent), lambda n: n == 0)


async def card_on_file(client: httpx.AsyncClient, account: str, customer: str) -> None:
    """Registered, a card on file and auto-recharge off: no card lookup, no recharge, only the movements under
    test."""
    await register(client, account, customer)
    configured = await client.post(f"/v1/accounts/{account}/payg/config", headers=ADMIN, json={
        "auto_recharge": False, "payment_method_id": "pm_card_visa"})
    assert configured.status_code == 202, configured.text
    await eventually(lambda: balance(client, account), lambda b: b["payment_method_id"] == "pm_card_visa")


async def test_a_refund_before_its_top_up_waits_and_is_debited_once_after_the_credit(settings: Settings) -> None:
    app = create_app(settings, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        await card_on_file(client, "early", "cus_EARLY")
        # The refund first: the same delivery twice, and the same total under another event id.
        refund = charge("pi_early1", amount=1000, amount_refunded=300, customer="cus_EARLY", charge_id="ch_early1")
        await deliver(client, settings, "charge.refunded", refund, event_id="evt_early_refund")
        await deliver(client, settings, "charge.refunded", refund, event_id="evt_early_refund")
        await deliver(client, settings, "charge.refunded", refund)
        await applied_to_end(settings, "payg", "stripe")
        assert await parked(settings) == 1  # once per fact, however often delivered
        assert (await balance(client, "early"))["balance_minor"] == 0
        assert await moves(settings, "refund") == 0

        # Then the top-up it refunds, twice: credited once, and the parked refund debited right after, once.
        credit = signed_checkout("early", "cs_test_early1", 1000, "cus_EARLY", "pi_early1")
        await post(client, settings, credit)
        await post(client, settings, credit)
        await balance_is(client, "early", 700)
        # Everything again, in the order that would have been right: nothing moves any more.
        await deliver(client, settings, "charge.refunded", refund, event_id="evt_early_refund")
        await deliver(client, settings, "charge.refunded", refund)
        await post(client, settings, credit)
        await applied_to_end(settings, "payg", "stripe")
        assert (await balance(client, "early"))["balance_minor"] == 700
        assert await moves(settings, "refund") == 1
        assert await parked(settings) == 0
        await all_published(settings)

    [published] = await on_the_bus(settings)
    assert (published.account_id, published.reason, published.amount_minor, published.currency) == (
        "early", "refund", 300, "usd")
    assert (published.payment_intent_id, published.charge_id, published.movement_id) == (
        "pi_early1", "ch_early1", "refund:ch_early1:300")


async def test_a_dispute_opened_before_its_credit_and_won_after_it_nets_nothing(settings: Settings) -> None:
    app = create_app(settings, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        await card_on_file(client, "dsp", "cus_DSP")
        opened = dispute("pi_dsp1", amount=400, dispute_id="dp_dsp1", charge_id="ch_dsp1")
        await deliver(client, settings, "charge.dispute.created", opened)
        # A dispute names no customer and the bridge knows no payment yet: wait until the fold has parked it, so
        # the credit is surely folded after it (the two may travel on different partitions).
        await eventually(lambda: parked(settings), lambda n: n == 1)

        await post(client, settings, signed_checkout("dsp", "cs_test_dsp1", 400, "cus_DSP", "pi_dsp1"))
        await post(client, settings, signed_checkout("dsp", "cs_test_dsp2", 250, "cus_DSP", "pi_dsp2"))
        await balance_is(client, "dsp", 250)  # 400 credited, 400 disputed, 250 more
        assert await parked(settings) == 0

        await deliver(client, settings, "charge.dispute.created", opened)  # a duplicate: nothing more
        await deliver(client, settings, "charge.dispute.closed", {**opened, "status": "won"})
        await deliver(client, settings, "charge.dispute.closed", {**opened, "status": "won"})
        await balance_is(client, "dsp", 650)
        await applied_to_end(settings, "payg", "stripe")
        assert (await balance(client, "dsp"))["balance_minor"] == 650
        assert await moves(settings, "dispute") == 2
        await all_published(settings)

    published = await on_the_bus(settings)
    assert sorted((e.reason, e.amount_minor, e.dispute_id, e.charge_id) for e in published) == [
        ("dispute", 400, "dp_dsp1", "ch_dsp1"), ("dispute_won", 400, "dp_dsp1", "ch_dsp1")]
    assert await read_to_end(settings, "deadletters") == []


def intent_succeeded(recharge: dict[str, Any], customer: str) -> dict[str, Any]:
    """`payment_intent.succeeded` of a recharge, as Stripe delivers it."""
    obj = {"id": recharge["payment_intent_id"], "object": "payment_intent", "status": "succeeded",
           "amount": recharge["amount_minor"], "amount_received": recharge["amount_minor"], "currency": "usd",
           "customer": customer, "latest_charge": f"ch_{recharge['payment_intent_id'].removeprefix('pi_')}",
           "metadata": {"account_id": "rfd", "recharge_id": recharge["recharge_id"]}}
    return payment_event("payment_intent.succeeded", obj)


async def test_a_refund_of_a_recharge_debits_it_suspends_the_keys_and_is_published_once(
    settings: Settings, front: PaygFakeStripeFront
) -> None:
    s = with_front(settings, front)
    app = create_app(s, consumers=["accounts", "payg", "keys"])  # the key store folds our key events
    async with client_for(app) as client:
        await register(client, "rfd", "cus_RFD")
        await configure(client, "rfd")  # 0 < 100: a recharge of 1000 at once, charged off-session
        [sent] = await eventually(lambda: recharges(s, "rfd"), is_sent)
        assert len(front.payment_intents()) == 1
        succeeded = encode_event(intent_succeeded(sent, "cus_RFD"))
        await post(client, s, succeeded)
        await post(client, s, succeeded)
        await balance_is(client, "rfd", 1000)
        # No further recharge after the refund: only the refund's movement is under test.
        await configure(client, "rfd", auto_recharge=False)
        await eventually(lambda: balance(client, "rfd"), lambda b: not b["auto_recharge"])
        await publish(app, *[job("rfd", f"r{i}") for i in range(150)])  # 150 jobs of 5: 250 left
        assert (await balance_is(client, "rfd", 250))["keys_suspended"] is False

        # Stripe refunds the whole recharge: 250 - 1000 = -750, below the allowance of 50: the keys stop.
        pi = sent["payment_intent_id"]
        refunded = charge(pi, amount=1000, amount_refunded=1000, customer="cus_RFD")
        await deliver(client, s, "charge.refunded", refunded, event_id="evt_rfd_refund")
        await deliver(client, s, "charge.refunded", refunded, event_id="evt_rfd_refund")
        await deliver(client, s, "charge.refunded", refunded)
        shown = await balance_is(client, "rfd", -750)
        await eventually(lambda: balance(client, "rfd"), lambda b: b["keys_suspended"])
        suspended = "SELECT suspended FROM keys.suspensions WHERE account_id = 'rfd'"
        await eventually(lambda: fetchval(s, suspended), lambda v: v is True)
        await applied_to_end(s, "payg", "stripe")
        assert (await balance(client, "rfd"))["balance_minor"] == -750
        assert shown["recharge_in_flight"] is False
        assert await moves(s, "refund") == 1
        await all_published(s)

    assert len(front.payment_intents()) == 1  # the card was charged once, and the refund asked for nothing more
    [published] = await on_the_bus(s)
    assert (published.account_id, published.reason, published.amount_minor, published.payment_intent_id) == (
        "rfd", "refund", 1000, pi)
    assert published.charge_id == f"ch_{pi.removeprefix('pi_')}"
