"""The Stripe request bench: counts through the real window logic, and the send schedule under the budget."""

from __future__ import annotations

from collections import Counter

import pytest

from services.devtools.bench.stripe_requests import bench, schedule_peak


@pytest.mark.parametrize(
    ("due", "budget", "peak"),
    [
        (Counter({0: 50}), 100, 50),  # fits in one second
        (Counter({0: 1_000}), 100, 100),  # a burst drains at the budget
        (Counter({0: 150, 1: 150}), 100, 100),
        (Counter(), 100, 0),
    ],
)
def test_schedule_peak(due: Counter[int], budget: float, peak: int) -> None:
    assert schedule_peak(due, budget) == peak


def test_one_request_per_customer_and_window() -> None:
    result = bench(20_000, 10, duration_seconds=600, window_seconds=60, budget=100)
    assert (result.windows, result.requests) == (10, 100)  # every customer has jobs in every window
    assert result.largest_window_burst == 10
    assert result.peak_requests_per_second <= 100 and result.keeps_up
    assert result.v2_stream_requests == 10


def test_a_burst_larger_than_a_window_can_drain_is_reported() -> None:
    result = bench(50_000, 5_000, duration_seconds=120, window_seconds=10, budget=100)
    assert result.largest_window_burst > 1_000
    assert not result.keeps_up
    assert result.peak_requests_per_second == 100
