"""Meter windows, identifiers and Stripe's timestamp rules, as tables of cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.meter.windows import (
    IDENTIFIER_MAX_LENGTH,
    Verdict,
    meter_event_identifier,
    send_verdict,
    window_start,
    windows_of,
)

T = datetime(2026, 11, 24, 10, 15, 42, 500_000, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "width", "start"),
    [
        (T, 60, datetime(2026, 11, 24, 10, 15, tzinfo=UTC)),
        (T, 300, datetime(2026, 11, 24, 10, 15, tzinfo=UTC)),
        (T, 3600, datetime(2026, 11, 24, 10, 0, tzinfo=UTC)),
        (T, 7, datetime.fromtimestamp(int(T.timestamp()) - int(T.timestamp()) % 7, tz=UTC)),
        (datetime(2026, 11, 24, 10, 15, tzinfo=UTC), 60, datetime(2026, 11, 24, 10, 15, tzinfo=UTC)),  # edge: own
        (datetime(2026, 11, 24, 10, 15, 59, 999_999, tzinfo=UTC), 60, datetime(2026, 11, 24, 10, 15, tzinfo=UTC)),
        # another zone names the same instant: the same window
        (T.astimezone(timezone(timedelta(hours=5, minutes=30))), 60, datetime(2026, 11, 24, 10, 15, tzinfo=UTC)),
    ],
)
def test_window_start(at: datetime, width: int, start: datetime) -> None:
    assert window_start(at, width) == start
    assert window_start(at, width).tzinfo is UTC


@pytest.mark.parametrize(("at", "width"), [(datetime(2026, 11, 24, 10, 15), 60), (T, 0), (T, -60)])
def test_window_start_refuses(at: datetime, width: int) -> None:
    with pytest.raises(ValueError):
        window_start(at, width)


ZONES = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
MOMENTS = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=ZONES)


@given(st.lists(MOMENTS, max_size=40), st.sampled_from([1, 7, 60, 300, 3600, 86_400]))
def test_windows_of_gives_each_time_its_window_start(times: list[datetime], width: int) -> None:
    starts, places = windows_of(times, width)
    assert [starts[place - 1] for place in places] == [window_start(at, width) for at in times]
    assert len(set(starts)) == len(starts) and all(start.tzinfo is UTC for start in starts)
    assert list(dict.fromkeys(places)) == list(range(1, len(starts) + 1))  # numbered as first seen


@pytest.mark.parametrize(("times", "width"), [([datetime(2026, 11, 24, 10, 15)], 60), ([T], 0), ([], -60)])
def test_windows_of_refuses_as_window_start_does(times: list[datetime], width: int) -> None:
    with pytest.raises(ValueError):
        windows_of(times, width)


W = datetime(2026, 11, 24, 10, 15, tzinfo=UTC)
EPOCH = int(W.timestamp())


@pytest.mark.parametrize(
    ("customer", "start", "width", "seq", "expected"),
    [
        ("cus_A", W, 60, 0, f"cus_A-{EPOCH}-60s-0"),
        ("cus_A", W, 60, 1, f"cus_A-{EPOCH}-60s-1"),  # a late job's event: a new identifier
        ("cus_B", W, 60, 0, f"cus_B-{EPOCH}-60s-0"),
        ("cus_A", W + timedelta(minutes=1), 60, 0, f"cus_A-{EPOCH + 60}-60s-0"),
        ("cus_A", W, 300, 0, f"cus_A-{EPOCH}-300s-0"),  # another width never collides
    ],
)
def test_identifier(customer: str, start: datetime, width: int, seq: int, expected: str) -> None:
    assert meter_event_identifier(customer, start, width, seq) == expected


def test_identifier_is_deterministic_and_fits_stripe_for_long_customer_ids() -> None:
    long_customer = "cus_" + "x" * 200
    first = meter_event_identifier(long_customer, W, 60, 3)
    assert first == meter_event_identifier(long_customer, W, 60, 3)
    assert len(first) <= IDENTIFIER_MAX_LENGTH
    assert first != meter_event_identifier(long_customer + "y", W, 60, 3)
    assert first.endswith(f"-{EPOCH}-60s-3")


def test_identifier_refuses_negative_sequence() -> None:
    with pytest.raises(ValueError):
        meter_event_identifier("cus_A", W, 60, -1)


@pytest.mark.parametrize(
    ("start", "width", "lateness", "verdict"),
    [
        (NOW - timedelta(seconds=30), 60, 5, Verdict.WAIT),  # still open
        (NOW - timedelta(seconds=60), 60, 5, Verdict.WAIT),  # ended, inside the lateness delay
        (NOW - timedelta(seconds=65), 60, 5, Verdict.SEND),  # ended + lateness: exactly closed
        (NOW - timedelta(hours=3), 60, 5, Verdict.SEND),
        (NOW - timedelta(days=34), 60, 5, Verdict.SEND),  # late, but Stripe still takes it
        (NOW - timedelta(days=35) + timedelta(minutes=30), 60, 5, Verdict.EXPIRED),  # within the safety margin
        (NOW - timedelta(days=36), 60, 5, Verdict.EXPIRED),  # needs an invoice item instead
        (NOW + timedelta(minutes=10), 60, 5, Verdict.WAIT),  # a job stamped in the future: wait for it
        (NOW - timedelta(seconds=60), 60, 0, Verdict.SEND),
    ],
)
def test_send_verdict(start: datetime, width: int, lateness: float, verdict: Verdict) -> None:
    assert send_verdict(start, width, lateness, NOW) is verdict
