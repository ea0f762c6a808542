"""When a meter window can no longer be sent: Stripe takes a meter event's timestamp within the past 35 calendar
days (docs.stripe.com/api/billing/meter-event/create), and the sender keeps an hour of margin. Pure rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from projections.meter.windows import (
    AGE_SAFETY_MARGIN,
    STRIPE_MAX_AGE,
    Verdict,
    expiry_detail,
    oldest_sendable,
    resendable,
    send_verdict,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EDGE = NOW - STRIPE_MAX_AGE + AGE_SAFETY_MARGIN
SECOND = timedelta(seconds=1)


def test_the_edge_is_35_days_less_the_margin() -> None:
    assert oldest_sendable(NOW) == EDGE == datetime(2026, 1, 25, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(("start", "can"), [
    (NOW - timedelta(minutes=5), True),
    (EDGE + SECOND, True),
    (EDGE, True),  # exactly at the edge: still sent
    (EDGE - SECOND, False),
    (NOW - timedelta(days=40), False),
])
def test_resendable(start: datetime, can: bool) -> None:
    assert resendable(start, NOW) is can
    # The claim's verdict and the resend rule agree: whatever cannot be resent is expired when claimed.
    assert (send_verdict(start, 60, 1.0, NOW) is Verdict.EXPIRED) is (not can)


def test_a_failed_window_keeps_why_it_failed_when_it_expires() -> None:
    detail = expiry_detail("Stripe refused it: No such customer: cus_x")
    assert "35 days" in detail and "invoice item" in detail and "No such customer: cus_x" in detail
    assert "not sent before" not in expiry_detail(None)
