"""The pay-as-you-go rules as tables of cases: prices, recharge decisions, failures, exhaustion."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from events.payg import RechargeConfirmed
from events.stripe import StripeEventReceived
from projections.payg.rules import (
    PaygPolicy,
    PriceError,
    RechargeState,
    after_failure,
    auto_recharge_once_card_saved,
    failure_message,
    intent_settlement,
    key_action,
    parse_prices,
    price_of,
    recharge_verdict,
    should_capture_card,
    should_recharge,
)
from projections.payg.stripe_events import RechargeSettled, TopUp, confirmed_settlement, recharge_settled, topup_of

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POLICY = PaygPolicy(allowance_minor=100, max_failures=3, backoff=timedelta(minutes=5), backoff_max=timedelta(hours=1))


@pytest.mark.parametrize(
    ("text", "prices"),
    [
        ("extract=5,classify=3,translate=4,summarize=2", {"extract": 5, "classify": 3, "translate": 4, "summarize": 2}),
        (" extract = 5 , classify=0 ,", {"extract": 5, "classify": 0}),
        ("extract=12000", {"extract": 12000}),
    ],
)
def test_parse_prices(text: str, prices: dict[str, int]) -> None:
    assert parse_prices(text) == prices


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no PAYG prices"),
        ("extract", "expected api=minor_units"),
        ("extract=", "expected api=minor_units"),
        ("extract=1.5", "expected api=minor_units"),  # minor units are integers, never floats
        ("extract=-1", "expected api=minor_units"),
        ("=5", "expected api=minor_units"),
        ("extract=5,extract=6", "priced twice"),
    ],
)
def test_bad_prices_are_refused(text: str, reason: str) -> None:
    with pytest.raises(PriceError, match=reason):
        parse_prices(text)


def test_price_of_an_unpriced_surface_names_the_priced_ones() -> None:
    assert price_of({"extract": 5}, "extract") == 5
    with pytest.raises(PriceError, match="no PAYG price for API surface 'ocr'; priced: extract"):
        price_of({"extract": 5}, "ocr")


LOW = RechargeState(
    balance_minor=400, threshold_minor=500, recharge_minor=2000, auto_recharge=True, has_card=True, in_flight=False
)


@pytest.mark.parametrize(
    ("state", "verdict"),
    [
        (LOW, "recharge"),
        (replace(LOW, balance_minor=500), "above_threshold"),  # at the threshold is not below it
        (replace(LOW, balance_minor=501), "above_threshold"),
        (replace(LOW, balance_minor=-5000), "recharge"),
        (replace(LOW, auto_recharge=False), "auto_off"),
        (replace(LOW, has_card=False), "no_card"),
        (replace(LOW, in_flight=True), "in_flight"),
        (replace(LOW, in_flight=True, balance_minor=-10_000), "in_flight"),
        (replace(LOW, failures=1, backoff_until=NOW + timedelta(seconds=1)), "backing_off"),
        (replace(LOW, failures=1, backoff_until=NOW), "recharge"),  # the back-off is over at its end
        (replace(LOW, failures=2, backoff_until=NOW - timedelta(minutes=1)), "recharge"),
        (replace(LOW, recharge_minor=0), "nothing_to_charge"),
    ],
)
def test_recharge_verdict(state: RechargeState, verdict: str) -> None:
    assert recharge_verdict(state, NOW) == verdict
    assert should_recharge(state, NOW) is (verdict == "recharge")


def test_a_burst_that_crosses_the_threshold_requests_one_recharge() -> None:
    """However the burst is cut into batches, the first request puts one in flight and that stops the rest."""
    for batch_size in (1, 3, 50):
        state, requested = replace(LOW, balance_minor=520), 0
        for start in range(0, 50, batch_size):
            jobs = min(batch_size, 50 - start)
            state = replace(state, balance_minor=state.balance_minor - 5 * jobs)
            if should_recharge(state, NOW):
                requested += 1
                state = replace(state, in_flight=True)
        assert requested == 1, batch_size


@pytest.mark.parametrize(
    ("before", "wait", "disable"),
    [
        (0, timedelta(minutes=5), False),
        (1, timedelta(minutes=10), False),
        (2, timedelta(minutes=20), True),  # the third failure in a row turns auto-recharge off
        (6, timedelta(hours=1), True),  # capped
    ],
)
def test_after_failure_backs_off_exponentially_and_gives_up(before: int, wait: timedelta, disable: bool) -> None:
    outcome = after_failure(before, NOW, POLICY)
    assert outcome.failures == before + 1
    assert outcome.backoff_until == NOW + wait
    assert outcome.disable_auto is disable


@pytest.mark.parametrize(
    ("balance", "suspended", "action"),
    [
        (0, False, None),
        (-100, False, None),  # at −allowance: still within it
        (-101, False, "suspend"),
        (-5000, False, "suspend"),
        (-5000, True, None),  # already suspended: nothing new
        (-101, True, None),
        (-100, True, "restore"),  # credit brought it back within the allowance
        (2000, True, "restore"),
        (2000, False, None),
    ],
)
def test_key_action(balance: int, suspended: bool, action: str | None) -> None:
    assert key_action(balance, suspended, POLICY) == action


def test_no_allowance_suspends_below_zero() -> None:
    assert key_action(-1, False, PaygPolicy(allowance_minor=0)) == "suspend"
    assert key_action(0, True, PaygPolicy(allowance_minor=0)) == "restore"


@pytest.mark.parametrize(
    ("code", "words"),
    [("authentication_required", "confirm"), ("card_declined", "declined"), (None, "did not go through"),
     ("something_new", "did not go through")],
)
def test_failure_message(code: str | None, words: str) -> None:
    assert words in failure_message(code)


def stripe(kind: str, obj: dict[str, Any], account: str | None = None) -> StripeEventReceived:
    return StripeEventReceived(stripe_event_id="evt_1", type=kind, created=NOW, data_object=obj, account_id=account)


SESSION = {"id": "cs_1", "object": "checkout.session", "mode": "payment", "payment_status": "paid",
           "amount_total": 1500, "currency": "USD", "customer": "cus_A", "metadata": {"account_id": "acme"}}


@pytest.mark.parametrize(
    ("kind", "obj", "account", "topup"),
    [
        ("checkout.session.completed", SESSION, None, TopUp("acme", "cs_1", 1500, "usd", "cus_A")),
        ("checkout.session.async_payment_succeeded", SESSION, None, TopUp("acme", "cs_1", 1500, "usd", "cus_A")),
        # a Payment Link carries the account as client_reference_id; the bridge's own lookup comes last
        ("checkout.session.completed", {**SESSION, "metadata": {}, "client_reference_id": "acme"}, None,
         TopUp("acme", "cs_1", 1500, "usd", "cus_A")),
        ("checkout.session.completed", {**SESSION, "metadata": {}}, "linked", TopUp("linked", "cs_1", 1500, "usd",
                                                                                    "cus_A")),
        ("checkout.session.completed", {**SESSION, "metadata": {"account_id": "acme", "purpose": "payg_topup"}},
         None, TopUp("acme", "cs_1", 1500, "usd", "cus_A", ours=True)),
        ("checkout.session.completed", {**SESSION, "metadata": {}}, None, None),  # nobody to credit
        ("checkout.session.completed", {**SESSION, "mode": "subscription"}, None, None),
        ("checkout.session.completed", {**SESSION, "payment_status": "unpaid"}, None, None),  # not paid yet
        ("checkout.session.completed", {**SESSION, "amount_total": None}, None, None),
        ("checkout.session.expired", SESSION, None, None),
        # the PaymentIntent whose payment method is the card the session saved
        ("checkout.session.completed", {**SESSION, "payment_intent": "pi_T1"}, None,
         TopUp("acme", "cs_1", 1500, "usd", "cus_A", payment_intent_id="pi_T1")),
        ("checkout.session.completed", {**SESSION, "payment_intent": {"id": "pi_T1"}}, None,
         TopUp("acme", "cs_1", 1500, "usd", "cus_A")),  # only an id is looked up
        ("checkout.session.completed", {**SESSION, "payment_intent": "seti_1"}, None,
         TopUp("acme", "cs_1", 1500, "usd", "cus_A")),
    ],
)
def test_topup_of(kind: str, obj: dict[str, Any], account: str | None, topup: TopUp | None) -> None:
    assert topup_of(stripe(kind, obj, account)) == topup


INTENT = {"id": "pi_1", "object": "payment_intent", "amount": 2000, "amount_received": 2000, "currency": "usd",
          "metadata": {"account_id": "acme", "recharge_id": "rch_x"}}


def test_recharge_settled() -> None:
    ok = recharge_settled(stripe("payment_intent.succeeded", INTENT))
    assert ok is not None and (ok.recharge_id, ok.payment_intent_id, ok.succeeded, ok.amount_minor) == (
        "rch_x", "pi_1", True, 2000)
    error = {"code": "card_declined", "decline_code": "insufficient_funds", "message": "no"}
    failed_obj = {**INTENT, "amount_received": 0, "last_payment_error": error}
    failed = recharge_settled(stripe("payment_intent.payment_failed", failed_obj))
    assert failed is not None and (failed.succeeded, failed.code, failed.message) == (False, "card_declined", "no")
    assert recharge_settled(stripe("payment_intent.succeeded", {**INTENT, "metadata": {}})) is None  # not ours
    assert recharge_settled(stripe("charge.succeeded", INTENT)) is None


@pytest.mark.parametrize(
    ("payment_intent", "has_card", "capture"),
    [
        ("pi_1", False, True),
        ("pi_1", True, False),  # a card on file (an operator's, or saved before) stays
        (None, False, False),  # nothing to look the card up by
        (None, True, False),
    ],
)
def test_should_capture_card(payment_intent: str | None, has_card: bool, capture: bool) -> None:
    assert should_capture_card(payment_intent, has_card) is capture


@pytest.mark.parametrize(
    ("auto_recharge", "configured", "after"),
    [
        (False, False, True),  # nobody configured it: the saved card (with off-session consent) turns it on
        (False, True, False),  # an explicit "off" stands
        (True, True, True),
        (True, False, True),
    ],
)
def test_auto_recharge_once_card_saved(auto_recharge: bool, configured: bool, after: bool) -> None:
    assert auto_recharge_once_card_saved(auto_recharge, configured) is after


@pytest.mark.parametrize(
    ("status", "settlement"),
    [
        ("succeeded", "succeeded"),
        ("requires_payment_method", "failed"),
        ("canceled", "failed"),
        ("processing", None),  # undecided: asked again later
        ("requires_action", None),
        ("requires_confirmation", None),
        ("requires_capture", None),
        (None, None),
    ],
)
def test_intent_settlement(status: str | None, settlement: str | None) -> None:
    assert intent_settlement(status) == settlement


def test_a_confirmed_recharge_settles_like_its_webhook() -> None:
    rch = "rch_" + "0" * 32
    confirmed = RechargeConfirmed(account_id="acme", recharge_id=rch, payment_intent_id="pi_1", amount_minor=2000,
                                  currency="usd", confirmed_at=NOW)
    assert confirmed_settlement(confirmed) == RechargeSettled(
        account_id="acme", recharge_id=rch, payment_intent_id="pi_1", succeeded=True, amount_minor=2000,
        currency="usd", code=None, message="", at=NOW)
    webhook = recharge_settled(stripe("payment_intent.succeeded", {**INTENT, "metadata": {"recharge_id": rch}}))
    # the same PaymentIntent, the same amount: the fold credits `recharge:pi_1` once, whichever comes first
    assert webhook is not None
    assert (webhook.payment_intent_id, webhook.amount_minor, webhook.succeeded) == ("pi_1", 2000, True)
