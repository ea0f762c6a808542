"""Stripe-side rules without Stripe: catalog checks, reconciliation, periods, retryable errors, the rate budget."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import stripe

from projections.meter.reconcile import CustomerUsage, differences, period_bounds
from services.platform.rate_limit import TokenBucket
from services.stripe_adapter.catalog import check_base_price, check_meter, check_overage_price, check_topup_price
from services.stripe_adapter.client import MeterEvent, is_retryable
from services.stripe_adapter.meter_stream import batch_key, stream_event

METER = {"event_name": "jobmeter_jobs", "default_aggregation": {"formula": "sum"},
         "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"}, "status": "active"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, None),
        ({"event_name": "other"}, "event_name is 'other'"),
        ({"default_aggregation": {"formula": "count"}}, "aggregation is 'count'"),
        ({"customer_mapping": {"type": "other"}}, "not mapped by id"),
        ({"status": "inactive"}, "meter is inactive"),
    ],
)
def test_check_meter(change: dict[str, Any], problem: str | None) -> None:
    problems = check_meter({**METER, **change}, "jobmeter_jobs")
    assert (problems == []) if problem is None else any(problem in p for p in problems)


OVERAGE = {"active": True, "billing_scheme": "tiered", "tiers_mode": "graduated",
           "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_1"},
           "tiers": [{"up_to": 10_000, "unit_amount": 0}, {"up_to": None, "unit_amount_decimal": "0.5"}]}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, None),
        ({"recurring": {"usage_type": "licensed", "meter": "mtr_1"}}, "not metered"),
        ({"recurring": {"usage_type": "metered", "meter": "mtr_2"}}, "bills meter 'mtr_2'"),
        ({"tiers_mode": "volume"}, "not graduated-tiered"),
        ({"tiers": [{"up_to": 5_000, "unit_amount": 0}]}, "first tier is not 10000 included jobs at 0"),
        ({"tiers": [{"up_to": 10_000, "unit_amount": 1}]}, "first tier is not 10000 included jobs at 0"),
        ({"active": False}, "not active"),
    ],
)
def test_check_overage_price(change: dict[str, Any], problem: str | None) -> None:
    problems = check_overage_price({**OVERAGE, **change}, "mtr_1", 10_000)
    assert (problems == []) if problem is None else any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("price", "interval", "ok"),
    [
        ({"active": True, "recurring": {"interval": "month", "usage_type": "licensed"}}, "month", True),
        ({"active": True, "recurring": {"interval": "year", "usage_type": "licensed"}}, "month", False),
        ({"active": True, "recurring": {"interval": "month", "usage_type": "metered"}}, "month", False),
        ({"active": False, "recurring": {"interval": "month"}}, "month", False),
    ],
)
def test_check_base_price(price: dict[str, Any], interval: str, ok: bool) -> None:
    assert (check_base_price(price, interval) == []) is ok


def test_check_topup_price() -> None:
    assert check_topup_price({"active": True, "type": "one_time"}) == []
    assert check_topup_price({"active": True, "type": "recurring"}) != []


def usage(**figures: int | None) -> CustomerUsage:
    base: dict[str, Any] = {"account_id": "acme", "customer_id": "cus_1", "ledger": 10, "recorded": 10,
                            "sent": 10, "unsent": 0, "unreportable": 0, "stripe": 10}
    return CustomerUsage(**{**base, **figures})


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        ({}, []),
        ({"stripe": None}, []),  # Stripe not asked
        ({"recorded": 8, "sent": 8, "stripe": 8}, ["ledger counted 10 jobs, the meter reporter recorded 8"]),
        ({"recorded": 12, "sent": 12, "stripe": 12}, ["the meter reporter has jobs the ledger lacks"]),
        ({"sent": 7, "unsent": 3, "stripe": 7}, ["3 jobs recorded but not yet acknowledged"]),
        ({"sent": 8, "unreportable": 2, "stripe": 8}, ["2 jobs Stripe cannot take"]),
        ({"stripe": 12}, ["Stripe's meter shows 12 jobs, Stripe acknowledged 10"]),
        ({"ledger": 11, "stripe": 9}, ["ledger counted 11", "Stripe's meter shows 9"]),
        ({"ledger": 12, "parked": 2}, ["ledger counted 12", "2 jobs parked"]),
    ],
)
def test_reconciliation_differences(figures: dict[str, int | None], expected: list[str]) -> None:
    found = differences(usage(**figures))
    assert len(found) == len(expected), found
    for sentence, fragment in zip(found, expected, strict=True):
        assert fragment in sentence


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("2026-11", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2026-11-24", datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC)),
        ("2026-11-24T10", datetime(2026, 11, 24, 10, tzinfo=UTC), datetime(2026, 11, 24, 11, tzinfo=UTC)),
    ],
)
def test_period_bounds(period: str, start: datetime, end: datetime) -> None:
    assert period_bounds(period) == (start, end)


@pytest.mark.parametrize("period", ["2026", "2026-13", "yesterday", "2026-11-24 10:00"])
def test_period_bounds_refuses(period: str) -> None:
    with pytest.raises(ValueError):
        period_bounds(period)


def api_error(cls: type[stripe.StripeError], status: int) -> stripe.StripeError:
    return cls("boom", http_status=status)


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (api_error(stripe.RateLimitError, 429), True),
        (api_error(stripe.APIError, 500), True),
        (api_error(stripe.APIError, 503), True),
        (api_error(stripe.IdempotencyError, 409), True),  # the same key still in flight
        # stripe leaves these two constructors unannotated, so strict mypy sees untyped calls
        (stripe.APIConnectionError("timed out"), True),  # type: ignore[no-untyped-call]
        (TimeoutError(), True),
        (stripe.InvalidRequestError("no such customer", "payload", http_status=400), False),  # type: ignore[no-untyped-call]
        (api_error(stripe.AuthenticationError, 401), False),
        (ValueError("bug"), False),
    ],
)
def test_is_retryable(error: BaseException, retry: bool) -> None:
    assert is_retryable(error) is retry


async def test_token_bucket_keeps_the_rate_within_budget() -> None:
    clock = [0.0]
    bucket = TokenBucket(10, clock=lambda: clock[0])
    for _ in range(10):  # a full bucket: one second's worth at once
        assert bucket.wait_time() == 0
        await bucket.acquire()
    assert bucket.wait_time() == pytest.approx(0.1)
    clock[0] += 0.5
    assert bucket.wait_time() == 0  # five more earned
    for _ in range(5):
        await asyncio.wait_for(bucket.acquire(), 1)
    assert bucket.wait_time() > 0


def test_stream_events_and_batch_keys() -> None:
    at = datetime(2026, 11, 24, 10, 15, tzinfo=UTC)
    a = MeterEvent("jobmeter_jobs", "cus_1", 7, at, "cus_1-1795515300-60s-0")
    b = MeterEvent("jobmeter_jobs", "cus_2", 1, at, "cus_2-1795515300-60s-0")
    assert stream_event(a) == {
        "event_name": "jobmeter_jobs", "identifier": "cus_1-1795515300-60s-0", "timestamp": "2026-11-24T10:15:00Z",
        "payload": {"stripe_customer_id": "cus_1", "value": "7"},
    }
    assert batch_key([a, b], 1) == batch_key([a, b], 1) != batch_key([b, a], 1)
    # A new key for every request and every claim: Stripe replays a saved 500 to a retry under the same key.
    assert batch_key([a, b], 2) != batch_key([a, b], 1)
    assert batch_key([replace(a, attempt=2), b], 1) != batch_key([a, b], 1)
    assert len(batch_key([a] * 100, 6)) <= 255
