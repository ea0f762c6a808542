"""The doctor's bounds: what is listed, and with which command, exactly at and around each bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jobmeter.settings import Settings
from services.engine.attention import (
    PARKED_BOUND,
    Bounds,
    LetterCount,
    alert_mails,
    dead_letters,
    describe_age,
    meter_reports,
    parked_jobs,
    parked_topups,
    under_replicated,
    unsettled_recharges,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def recharge(requested_at: datetime, **over: Any) -> dict[str, Any]:
    return {"recharge_id": "rc-acme-1", "account_id": "acme", "amount_minor": 2000, "currency": "usd",
            "payment_intent_id": None, "attempts": 0, "sent_at": None, "last_error": None,
            "requested_at": requested_at, **over}


def report(state: str, closed: datetime, **over: Any) -> dict[str, Any]:
    return {"account_id": "acme", "customer_id": "cus_acme", "window_start": closed - timedelta(seconds=60),
            "window_seconds": 60, "seq": 0, "value": 7, "state": state, "attempts": 1, "last_error": None,
            "claimed_until": None, **over}


def test_bounds_follow_the_settings_they_derive_from() -> None:
    bounds = Bounds.of(Settings(jobmeter_payg_settle_after_seconds=600, jobmeter_meter_lateness_seconds=5,
                                jobmeter_meter_lease_seconds=300))
    assert bounds == Bounds(recharge=timedelta(seconds=1200), meter=timedelta(seconds=605), parked=PARKED_BOUND)


def test_a_recharge_is_listed_once_requested_past_its_bound() -> None:
    bound = timedelta(minutes=20)
    assert unsettled_recharges([recharge(NOW - bound + SECOND)], NOW, bound) == []
    [item] = unsettled_recharges([recharge(NOW - bound, payment_intent_id="pi_1", last_error="card declined")],
                                 NOW, bound)
    assert (item.kind, item.subject, item.age_seconds) == ("payg-recharge-unsettled", "acme", bound.total_seconds())
    assert item.resolve == "jobmeter payg status --account acme"
    assert "sent as pi_1" in item.detail and "card declined" in item.detail
    [never] = unsettled_recharges([recharge(NOW - 2 * bound)], NOW, bound)
    assert "never sent to Stripe" in never.detail


def test_meter_reports_unsent_past_the_bound_and_every_failed_or_expired_one_are_listed() -> None:
    bound = timedelta(seconds=605)
    assert meter_reports([report("pending", NOW - bound + SECOND), report("sending", NOW - bound + SECOND)],
                         NOW, bound) == []
    assert meter_reports([report("sent", NOW - 10 * bound)], NOW, bound) == []
    pending, sending = meter_reports([report("pending", NOW - bound),
                                      report("sending", NOW - bound, claimed_until=NOW - bound)], NOW, bound)
    assert {pending.kind, sending.kind} == {"meter-report-unsent"}
    assert "never claimed" in pending.detail and "lease until" in sending.detail
    assert pending.resolve == "jobmeter stripe reports --account acme"
    [failed] = meter_reports([report("failed", NOW - SECOND, last_error="no such customer")], NOW, bound)
    assert failed.kind == "meter-report-failed" and failed.age_seconds == 1
    assert "no such customer" in failed.detail and "send them again" in failed.detail
    assert failed.resolve == "jobmeter stripe resend --account acme"
    [expired] = meter_reports([report("expired", NOW - 10 * bound, identifier="cus_acme-1-60s-0")], NOW, bound)
    assert expired.kind == "meter-report-expired" and "invoice item" in expired.detail
    assert "jobmeter stripe expired --account acme --jobs" in expired.detail
    assert expired.resolve.startswith("jobmeter stripe acknowledge cus_acme-1-60s-0 --note")


def test_a_failed_report_past_stripes_35_days_is_not_sent_to_resend() -> None:
    bound = timedelta(seconds=605)
    old = NOW - timedelta(days=36)
    [failed] = meter_reports([report("failed", old, last_error="no such customer")], NOW, bound)
    assert failed.kind == "meter-report-failed" and "expired on its next pass" in failed.detail
    assert failed.resolve == "jobmeter run meter"


def test_parked_jobs_are_listed_after_a_day_with_the_registration_that_releases_them() -> None:
    day = PARKED_BOUND
    young = {"account_id": "new", "jobs": 3, "oldest": NOW - day + SECOND}
    assert parked_jobs("payg", [young], NOW, day) == []
    [payg] = parked_jobs("payg", [{**young, "oldest": NOW - day}], NOW, day)
    assert (payg.kind, payg.subject, payg.resolve) == (
        "payg-parked-jobs", "new", "jobmeter accounts create new --model payg")
    assert payg.detail.startswith("3 job(s)")
    unknown, unlinked = parked_jobs("meter", [
        {**young, "oldest": NOW - day, "model": None, "customer_id": None},
        {**young, "account_id": "sub", "oldest": NOW - 2 * day, "model": "subscription", "customer_id": None},
    ], NOW, day)
    assert unknown.kind == "meter-parked-jobs"
    assert unknown.resolve.startswith("jobmeter accounts create new --model subscription --stripe-customer")
    assert unlinked.resolve == "jobmeter subscriptions checkout --account sub"


def test_parked_topups_wait_a_day_and_refused_ones_are_listed_at_once() -> None:
    day = PARKED_BOUND
    waiting = {"session_id": "cs_1", "account_id": "new", "parked_since": NOW - day + SECOND, "refused_at": None}
    assert parked_topups([waiting], NOW, day) == []
    [late] = parked_topups([{**waiting, "parked_since": NOW - day}], NOW, day)
    assert (late.kind, late.resolve) == ("payg-topup-parked", "jobmeter accounts create new --model payg")
    [refused] = parked_topups([{**waiting, "refused_at": NOW}], NOW, day)
    assert (refused.kind, refused.age_seconds) == ("payg-topup-refused", 0)
    assert "refund" in refused.detail and refused.resolve == "jobmeter accounts show new"


def test_dead_letters_are_listed_per_consumer_with_the_command_that_shows_them() -> None:
    counts = [LetterCount("meter", 1, NOW, "bad"), LetterCount("ledger", 2, NOW - SECOND, "not an event envelope"),
              LetterCount("", 1, NOW, "unreadable dead letter")]
    unreadable, ledger, meter = dead_letters(counts, NOW)
    assert (ledger.subject, ledger.resolve, ledger.age_seconds) == (
        "ledger", "jobmeter deadletters list --consumer ledger", 1)
    assert ledger.detail.startswith("2 dead letter(s)") and "not an event envelope" in ledger.detail
    assert meter.resolve == "jobmeter deadletters list --consumer meter"
    assert (unreadable.subject, unreadable.resolve) == ("(unreadable)", "jobmeter deadletters list")
    assert dead_letters([], NOW) == []


def test_under_replicated_topics_are_named() -> None:
    [item] = under_replicated({"p.jobs.completed": 1}, 3, "kafka:9092")
    assert (item.kind, item.subject, item.age_seconds) == ("topic-under-replicated", "p.jobs.completed", None)
    assert "1 copy" in item.detail and "factor 3" in item.detail and "kafka:9092" in item.resolve
    assert under_replicated({}, 3, "kafka:9092") == []


def test_alert_mails_unsent_past_the_bound_are_listed_failing_or_never_tried() -> None:
    bound = Bounds.of(Settings()).mail

    def mail(created_at: datetime, **over: Any) -> dict[str, Any]:
        return {"event_id": "e1", "account_id": "acme", "type": "usage.cap_reached", "created_at": created_at,
                "attempts": 3, "last_error": "550 no such user", "contact_email": "ops@acme.example", **over}

    assert alert_mails([mail(NOW - bound + SECOND)], NOW, bound) == []
    [failing] = alert_mails([mail(NOW - bound)], NOW, bound)
    assert (failing.kind, failing.subject, failing.resolve) == ("alert-mail-unsent", "acme",
                                                                "jobmeter webhooks mails acme")
    assert "to ops@acme.example" in failing.detail and "after 3 attempt(s), last error: 550 no such user" in \
        failing.detail and "jobmeter accounts contact acme --email ADDRESS" in failing.detail
    [never] = alert_mails([mail(NOW - 2 * bound, attempts=0, last_error=None, contact_email=None)], NOW, bound)
    assert "the billing inbox" in never.detail and "never tried" in never.detail
    assert never.age_seconds == (2 * bound).total_seconds()


def test_ages_read_as_their_two_largest_units() -> None:
    assert [describe_age(s) for s in (None, 0, 59, 61, 3_600, 90_061, -5)] == [
        "-", "0s", "59s", "1m 1s", "1h", "1d 1h", "0s"]
