"""The recharger's pure pieces: back-off, what counts as history, which PaymentIntent is a recharge's, and the
doctor's clock for a recharge (when the fold recorded it, not the jobs' log time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import stripe

from events.payg import recharge_attempt_key
from services.engine.attention import unsettled_recharges
from services.payg.attempts import from_history, pick_intent, retry_delay

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_each_attempt_has_its_own_key() -> None:
    keys = {recharge_attempt_key("rch_" + "a" * 32, n) for n in range(1, 50)}
    assert len(keys) == 49


def test_transient_errors_back_off_doubling_up_to_the_most() -> None:
    first, most = timedelta(seconds=30), timedelta(minutes=10)
    assert [retry_delay(n, first, most).total_seconds() for n in (1, 2, 3, 5, 6, 1000)] == [30, 60, 120, 480, 600,
                                                                                            600]


def test_a_recharge_recorded_long_after_its_jobs_comes_from_history() -> None:
    def row(behind: timedelta) -> dict[str, Any]:
        return {"requested_at": NOW - behind, "recorded_at": NOW}

    assert not from_history(row(timedelta(hours=6)), timedelta(hours=6))
    assert from_history(row(timedelta(hours=6, seconds=1)), timedelta(hours=6))


def intent(pi: str, recharge: str | None, status: str, created: int) -> stripe.PaymentIntent:
    metadata = {"recharge_id": recharge} if recharge else {}
    return stripe.PaymentIntent.construct_from(
        {"id": pi, "object": "payment_intent", "status": status, "created": created, "metadata": metadata}, "sk")


def test_the_recharges_payment_intent_is_its_success_else_its_newest() -> None:
    others = [intent("pi_topup", None, "succeeded", 9), intent("pi_other", "rch_b", "succeeded", 9)]
    assert pick_intent(others, "rch_a") is None
    ours = [intent("pi_1", "rch_a", "succeeded", 1), intent("pi_2", "rch_a", "requires_payment_method", 2)]
    assert getattr(pick_intent(others + ours, "rch_a"), "id", None) == "pi_1"
    assert getattr(pick_intent(others + ours[1:], "rch_a"), "id", None) == "pi_2"


def test_the_doctor_counts_a_recharge_from_when_the_fold_recorded_it() -> None:
    bound = timedelta(minutes=20)
    row = {"recharge_id": "rch_a", "account_id": "acme", "amount_minor": 2000, "currency": "usd",
           "payment_intent_id": None, "attempts": 1, "sent_at": None, "last_error": None,
           "requested_at": NOW - timedelta(hours=7), "recorded_at": NOW - timedelta(minutes=1)}
    assert unsettled_recharges([row], NOW, bound) == []  # the consumer was behind: the bound has just begun
    [item] = unsettled_recharges([{**row, "recorded_at": NOW - bound}], NOW, bound)
    assert item.age_seconds == bound.total_seconds()
