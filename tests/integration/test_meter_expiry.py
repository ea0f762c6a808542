"""A meter window that can no longer be sent ends `expired`, final, and stays on `jobmeter doctor` only until an
operator billed its jobs by hand and acknowledged it. Real Postgres and stripe-mock (behind the meter's fake front),
the fold and the sender driven step by step on a clock the test sets (`meter_harness`), the CLI run in process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from events.stripe import StripeEventReceived
from jobmeter.settings import Settings
from projections.meter.errors import ERROR_REPORT
from tests.integration.cli import run_cli
from tests.integration.meter_harness import CUSTOMER, Harness, jobs, open_harness

pytestmark = pytest.mark.integration


@pytest.fixture
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    async with open_harness(settings) as h:
        yield h


async def doctor(h: Harness) -> tuple[int, list[dict[str, Any]]]:
    result = await run_cli(h.settings, "doctor", "--json")
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, [i for i in json.loads(result.stdout) if i["kind"].startswith("meter-")]


def refused(h: Harness, identifier: str, event_id: str) -> StripeEventReceived:
    """Stripe's meter validation refusing the customer's events sent around now (as the v2 stream reports it)."""
    iso = [(h.now + timedelta(minutes=m)).isoformat().replace("+00:00", "Z") for m in (-1, 1)]
    return StripeEventReceived(stripe_event_id=event_id, type=ERROR_REPORT, created=h.now, data_object={
        "validation_start": iso[0], "validation_end": iso[1],
        "reason": {"error_count": 1, "error_types": [{
            "code": "meter_event_customer_not_found", "error_count": 1,
            "sample_errors": [{"error_message": f"No customer {CUSTOMER}",
                               "request": {"identifier": f"{identifier}:1.1"}}],
        }]},
    })


async def test_a_refused_window_past_35_days_expires_with_its_reason_and_jobs_until_acknowledged(
    harness: Harness,
) -> None:
    h = harness
    await h.publish(*jobs(3, h.now - timedelta(minutes=10)))
    assert (await h.sender().send_due()).sent == 1
    [report] = await h.reports()
    await h.publish(refused(h, report.identifier, "evt_test_expiry"))
    [failed] = await h.reports()
    assert failed.state == "failed"

    # Nobody fixed the cause and resent it in time: 36 days on, no resend can work any more.
    later = h.now + timedelta(days=36)
    assert (await h.sender(at=later).send_due()).unreportable == 1
    [expired] = await h.reports()
    assert expired.state == "expired" and expired.last_error is not None
    assert "35 days" in expired.last_error and "meter_event_customer_not_found" in expired.last_error
    told = [e for e in await h.emitted() if e.event_type == "MeterUsageUnreportable"]
    assert [e.reason for e in told] == ["rejected"]  # the bus heard it once, when Stripe refused it
    assert (await h.sender(at=later).send_due()).claimed == 0  # final: never claimed, sent or expired again

    code, items = await doctor(h)
    assert code == 1
    [item] = items
    assert item["kind"] == "meter-report-expired"
    assert item["resolve"].startswith(f"jobmeter stripe acknowledge {report.identifier}")

    listed = await run_cli(h.settings, "stripe", "expired", "--account", "acme", "--jobs", "--json")
    [row] = json.loads(listed.stdout)
    assert (row["identifier"], row["value"], row["customer_id"]) == (report.identifier, 3, CUSTOMER)
    assert row["jobs"] == ["extract:j-0", "extract:j-1", "extract:j-2"] and "35 days" in row["reason"]

    done = await run_cli(h.settings, "stripe", "acknowledge", report.identifier, "--note", "ii_test_byhand")
    assert done.exit_code == 0, done.output
    assert await doctor(h) == (0, [])
    again = await run_cli(h.settings, "stripe", "acknowledge", report.identifier, "--note", "twice")
    assert again.exit_code == 1  # nothing left to acknowledge
    shown = await run_cli(h.settings, "stripe", "expired", "--all", "--json")
    assert [r["acknowledged"] for r in json.loads(shown.stdout)] == ["ii_test_byhand"]
    assert json.loads((await run_cli(h.settings, "stripe", "expired", "--json")).stdout) == []


async def test_only_an_expired_report_can_be_acknowledged(harness: Harness) -> None:
    h = harness
    await h.publish(*jobs(2, h.now - timedelta(minutes=10)))
    assert (await h.sender().send_due()).sent == 1
    [report] = await h.reports()
    result = await run_cli(h.settings, "stripe", "acknowledge", report.identifier, "--note", "by mistake")
    assert result.exit_code == 1
    assert [(r.state, r.acknowledged_at) for r in await h.reports()] == [("sent", None)]
