"""Stripe's meter error report read into which of our reports failed (projections/meter/errors.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from projections.meter.errors import error_report, identifier_of


def data(*kinds: dict[str, Any], start: str = "2026-12-03T10:00:00.000Z", end: str = "2026-12-03T10:05:00.000Z"
         ) -> dict[str, Any]:
    """The `data` of a fetched `v1.billing.meter.error_report_triggered`, shaped as Stripe's SDK types it."""
    return {"developer_message_summary": "2 invalid meter events", "validation_start": start, "validation_end": end,
            "reason": {"error_count": sum(k["error_count"] for k in kinds), "error_types": list(kinds)}}


def kind(code: str, *identifiers: str, count: int | None = None) -> dict[str, Any]:
    return {"code": code, "error_count": count if count is not None else len(identifiers),
            "sample_errors": [{"error_message": f"{code} for {i}", "request": {"identifier": i}}
                              for i in identifiers]}


def test_each_code_reaches_as_far_as_its_cause() -> None:
    report = error_report(data(kind("archived_meter", "a-1:1.1"), kind("meter_event_customer_not_found", "b-1"),
                               kind("meter_event_invalid_value", "c-1:2.3", "c-2", count=7)))
    assert report.start == datetime(2026, 12, 3, 10, tzinfo=UTC)
    assert report.end == datetime(2026, 12, 3, 10, 5, tzinfo=UTC)
    meter, customer, event = report.failures
    assert (meter.scope, customer.scope, event.scope) == ("meter", "customer", "event")
    # A sample names the request's idempotency key, which begins with our identifier, or the identifier itself.
    assert (meter.identifiers, customer.identifiers, event.identifiers) == (
        frozenset({"a-1"}), frozenset({"b-1"}), frozenset({"c-1", "c-2"}))
    assert event.count == 7  # Stripe's count, beyond the samples
    assert "meter_event_invalid_value" in event.detail(report.summary) and "2 invalid" in event.detail(report.summary)


def test_an_unknown_code_is_taken_as_the_sampled_events_only() -> None:
    [failure] = error_report(data(kind("some_new_code", "x-1"))).failures
    assert (failure.scope, failure.identifiers) == ("event", frozenset({"x-1"}))
    assert failure.message == "some_new_code for x-1"


@pytest.mark.parametrize("broken", [
    {"validation_start": "2026-12-03T10:00:00Z", "reason": {"error_types": []}},
    {**data(), "validation_end": "2026-12-03T09:00:00Z"},
    {**data(), "reason": {"error_types": [{"error_count": 1}]}},
    {**data(), "reason": "nope"},
])
def test_a_report_that_cannot_be_read_is_refused_with_a_reason(broken: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="meter error report|error_types"):
        error_report(broken)


def test_identifiers_hold_no_colon_so_a_key_leads_back_to_one() -> None:
    assert identifier_of("cus_1-1764756000-60s-0:3.2") == "cus_1-1764756000-60s-0"
    assert identifier_of("cus_1-1764756000-60s-0") == "cus_1-1764756000-60s-0"
