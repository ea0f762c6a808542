"""The meter reporter against real Postgres and stripe-mock: usage reaches Stripe once, whatever fails when.

Most tests drive the fold and the sender step by step (so a crash can be placed exactly between two steps);
stripe-mock sits behind `FakeMeterStripeFront`, which counts what reached it and plays 429s and timeouts on cue.
The last test runs the whole path through Kafka and the Runtime.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from events.accounts import AccountRegistered, StripeCustomerLinked
from events.billing import MeterUsageReported
from events.registry import REGISTRY
from events.stripe import StripeEventReceived
from events.topics import Topics
from jobmeter.settings import Settings
from projections.meter.errors import ERROR_REPORT
from projections.meter.windows import window_start
from services.engine.runtime import build_runtime
from services.meter.sender import MeterSender
from services.stripe_adapter.client import MeterEvent, StripeMeterEvents
from tests.integration.cli import run_cli
from tests.integration.fake_meter_stripe_front import FakeMeterStripeFront
from tests.integration.helpers import eventually, read_topic
from tests.integration.meter_harness import CUSTOMER, LEASE, WIDTH, Harness, jobs, open_harness

pytestmark = pytest.mark.integration

class ProcessDied(BaseException):
    """Stands for the process being killed: not an Exception, so nothing on the way catches it."""


@pytest.fixture
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    async with open_harness(settings) as h:
        yield h


def minutes_ago(h: Harness, n: int) -> datetime:
    return h.now - timedelta(minutes=n)


async def test_one_event_per_customer_and_window_with_the_data_derived_identifier(harness: Harness) -> None:
    h = harness
    at = minutes_ago(h, 10)
    await h.publish(*jobs(3, at), *jobs(2, at + timedelta(minutes=1), prefix="k"))
    await h.publish(*jobs(3, at))  # the same jobs again: counted once
    await h.publish(*jobs(4, at, account="payg-acct", prefix="p"))  # not a subscription account
    await h.publish(*jobs(4, at, prefix="r", channel="rapidapi"))  # RapidAPI bills those itself

    outcome = await h.sender().send_due()
    assert (outcome.sent, outcome.postponed, outcome.unreportable) == (2, 0, 0)

    sent = h.front.meter_events()
    assert len(sent) == 2
    first = window_start(at, WIDTH)
    by_time = sorted(sent, key=lambda r: int(r.form["timestamp"]))
    assert by_time[0].form == {
        "event_name": "jobmeter_jobs",
        "identifier": f"{CUSTOMER}-{int(first.timestamp())}-60s-0",
        "timestamp": str(int(first.timestamp())),
        "payload[stripe_customer_id]": CUSTOMER,
        "payload[value]": "3",
    }
    assert by_time[1].form["payload[value]"] == "2"
    assert all(r.idempotency_key == f"{r.form['identifier']}:1.1" for r in sent)  # first claim, first request
    assert [(r.state, r.value, r.seq) for r in await h.reports()] == [("sent", 3, 0), ("sent", 2, 0)]

    events = await h.emitted()
    assert [type(e) for e in events] == [MeterUsageReported, MeterUsageReported]
    assert sorted(e.value for e in events) == [2, 3]

    assert (await h.sender().send_due()).claimed == 0  # nothing is sent twice
    assert len(h.front.meter_events()) == 2


async def test_open_windows_wait(harness: Harness) -> None:
    h = harness
    await h.publish(*jobs(2, h.now))
    assert (await h.sender().send_due()).claimed == 0
    later = await h.sender(at=window_start(h.now, WIDTH) + timedelta(seconds=WIDTH + 6)).send_due()
    assert later.sent == 1


async def test_a_window_being_added_to_is_not_claimed_with_a_stale_value(harness: Harness) -> None:
    h = harness
    at = minutes_ago(h, 10)
    await h.publish(*jobs(2, at))
    async with h.pool.acquire() as fold, fold.transaction():  # a fold adding to the open row, not yet committed
        await fold.execute("UPDATE meter.reports SET value = value + 3 WHERE state = 'pending'")
        assert (await h.sender().send_due()).claimed == 0  # skipped while locked, never sent as 2
    assert (await h.sender().send_due()).sent == 1
    assert [r.form["payload[value]"] for r in h.front.meter_events()] == ["5"]


async def test_a_report_whose_lease_ran_out_while_queued_is_not_sent_by_the_late_sender(harness: Harness) -> None:
    h = harness
    await h.publish(*jobs(3, minutes_ago(h, 10)))
    times = iter([h.now, h.now + LEASE + timedelta(seconds=1)])  # claimed, then queued past the lease
    slow = MeterSender(h.pool, h.sink(), event_name="jobmeter_jobs", lateness_seconds=5, lease=LEASE,
                       clock=lambda: next(times, h.now + LEASE + timedelta(seconds=1)))
    assert (await slow.send_due()).postponed == 1
    assert h.front.meter_events() == []
    assert (await h.sender(at=h.now + LEASE + timedelta(seconds=2)).send_due()).sent == 1
    assert len(h.front.meter_events()) == 1


async def test_crash_between_sent_and_recorded_resends_the_same_identifier_under_a_new_key(harness: Harness) -> None:
    h = harness
    await h.publish(*jobs(5, minutes_ago(h, 10)))

    class DiesAfterSending:
        batch_size = 1

        def __init__(self, real: StripeMeterEvents) -> None:
            self.real = real

        async def send(self, event: MeterEvent) -> None:
            await self.real.send(event)
            raise ProcessDied  # Stripe has it; we die before writing that down

    with pytest.raises(ProcessDied):
        await h.sender(DiesAfterSending(h.sink())).send_due()
    assert [r.state for r in await h.reports()] == ["sending"]
    assert await h.emitted() == []

    # A new process: the lease protects the claim until it runs out, then the same report goes again.
    assert (await h.sender(at=h.now + timedelta(minutes=1)).send_due()).claimed == 0
    assert (await h.sender(at=h.now + LEASE + timedelta(seconds=1)).send_due()).sent == 1

    first, second = h.front.meter_events()
    assert first.form == second.form  # the same identifier and value: Stripe counts it once
    assert (first.idempotency_key, second.idempotency_key) == (f"{first.form['identifier']}:1.1",
                                                               f"{first.form['identifier']}:2.1")
    assert first.form["payload[value]"] == "5"
    [report] = await h.reports()
    assert (report.state, report.value, report.attempts) == ("sent", 5, 2)
    assert [e.value for e in await h.emitted()] == [5]  # reported on the bus once


async def test_crash_between_recorded_and_sent_sends_once_after_restart(harness: Harness) -> None:
    h = harness
    await h.publish(*jobs(4, minutes_ago(h, 10)))

    class DiesBeforeSending:
        batch_size = 1

        async def send(self, event: MeterEvent) -> None:
            raise ProcessDied

    with pytest.raises(ProcessDied):
        await h.sender(DiesBeforeSending()).send_due()
    assert h.front.meter_events() == []
    # Jobs arriving while the value is frozen go to the next sequence number, never into the claimed report.
    await h.publish(*jobs(1, minutes_ago(h, 10), prefix="late"))

    outcome = await h.sender(at=h.now + LEASE + timedelta(seconds=1)).send_due()
    assert outcome.sent == 2
    values = sorted((r.form["identifier"][-1], r.form["payload[value]"]) for r in h.front.meter_events())
    assert values == [("0", "4"), ("1", "1")]
    assert [(r.seq, r.value, r.state) for r in await h.reports()] == [(0, 4, "sent"), (1, 1, "sent")]


async def test_429s_5xx_and_timeouts_are_retried_with_the_same_identifier_under_fresh_keys(harness: Harness) -> None:
    """Stripe replays a saved 500 to every retry under its key (the fake does too): only a fresh key gets past it,
    and the unchanged identifier keeps the usage counted once."""
    h = harness
    await h.publish(*jobs(7, minutes_ago(h, 10)))
    h.front.play(["429", "500", "slow", "429"])  # then pass

    outcome = await h.sender().send_due()
    assert outcome.sent == 1
    seen = h.front.meter_events()
    assert [r.action for r in seen] == ["429", "500", "slow", "429", "pass"]
    assert len({(r.form["identifier"], r.form["payload[value]"]) for r in seen}) == 1
    assert len({r.idempotency_key for r in seen}) == 5
    [report] = await h.reports()
    assert (report.state, report.value, report.attempts) == ("sent", 7, 1)
    assert len(await h.emitted()) == 1


async def test_exhausted_retries_keep_the_value_frozen_until_a_later_pass(harness: Harness) -> None:
    h = harness
    await h.publish(*jobs(3, minutes_ago(h, 10)))
    h.front.play(["429", "429"])

    outcome = await h.sender(h.sink(attempts=2)).send_due()
    assert outcome.postponed == 1
    [report] = await h.reports()
    assert (report.state, report.attempts) == ("sending", 1)
    assert report.last_error is not None and "RateLimitError" in report.last_error
    await h.publish(*jobs(2, minutes_ago(h, 10), prefix="late"))

    assert (await h.sender(at=h.now + timedelta(seconds=10)).send_due()).claimed == 1  # only the new seq 1
    assert (await h.sender(at=h.now + timedelta(seconds=31)).send_due()).sent == 1  # the postponed seq 0
    sends = [(r.form["identifier"][-1], r.form["payload[value]"], r.action) for r in h.front.meter_events()]
    assert sends[:2] == [("0", "3", "429"), ("0", "3", "429")]
    assert sorted(sends[2:]) == [("0", "3", "pass"), ("1", "2", "pass")]


async def test_late_jobs_go_out_in_a_later_event_with_a_new_identifier(harness: Harness) -> None:
    h = harness
    at = minutes_ago(h, 30)
    await h.publish(*jobs(3, at))
    assert (await h.sender().send_due()).sent == 1

    await h.publish(*jobs(3, at), *jobs(2, at, prefix="late"))  # two duplicates' worth of old ones, two new
    assert (await h.sender().send_due()).sent == 1
    await h.publish(*jobs(1, at, prefix="later"))
    assert (await h.sender().send_due()).sent == 1

    sent = h.front.meter_events()
    start = int(window_start(at, WIDTH).timestamp())
    assert [(r.form["identifier"], r.form["timestamp"], r.form["payload[value]"]) for r in sent] == [
        (f"{CUSTOMER}-{start}-60s-0", str(start), "3"),
        (f"{CUSTOMER}-{start}-60s-1", str(start), "2"),
        (f"{CUSTOMER}-{start}-60s-2", str(start), "1"),
    ]
    assert sum(e.value for e in await h.emitted()) == 6


async def test_jobs_read_before_their_account_are_counted_once_it_arrives(harness: Harness) -> None:
    h = harness
    at = minutes_ago(h, 10)
    await h.publish(*jobs(2, at, account="early"), *jobs(3, at, account="unlinked", prefix="u"),
                    *jobs(4, at, account="turns-payg", prefix="p"))
    assert await h.reports("early") == []
    assert await h.pool.fetchval("SELECT count(*) FROM meter.parked") == 9

    await h.publish(AccountRegistered(account_id="early", model="subscription", stripe_customer_id="cus_Early"),
                    AccountRegistered(account_id="unlinked", model="subscription"),
                    AccountRegistered(account_id="turns-payg", model="payg"))
    assert [r.value for r in await h.reports("early")] == [2]
    assert await h.reports("unlinked") == []  # still no customer: still parked
    await h.publish(*jobs(1, at, account="unlinked", prefix="u2"))
    await h.publish(StripeCustomerLinked(account_id="unlinked", stripe_customer_id="cus_Late"))
    assert [(r.customer_id, r.value) for r in await h.reports("unlinked")] == [("cus_Late", 4)]
    assert await h.pool.fetchval("SELECT count(*) FROM meter.parked") == 0  # the payg account's jobs: dropped
    assert await h.reports("turns-payg") == []

    await h.publish(*jobs(2, at, account="early"))  # the parked jobs again: already counted
    assert [r.value for r in await h.reports("early")] == [2]


async def test_windows_older_than_stripe_accepts_are_flagged_not_dropped(harness: Harness) -> None:
    h = harness
    await h.publish(*jobs(2, h.now - timedelta(days=40)))
    outcome = await h.sender().send_due()
    assert outcome.unreportable == 1
    assert h.front.meter_events() == []
    [report] = await h.reports()
    assert report.state == "expired"
    [event] = await h.emitted()
    assert (event.event_type, event.reason, event.value) == ("MeterUsageUnreportable", "expired", 2)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def test_what_stripes_validation_refused_fails_with_the_reason_and_is_sent_again_on_resend(
    harness: Harness,
) -> None:
    """The v2 stream's 200 is not the end: Stripe's later error report fails the reports it names (here the whole
    customer in the window, as `meter_event_customer_not_found` reaches), and `jobmeter stripe resend` puts them
    back in line, to go out with their identifiers and values under new keys."""
    h = harness
    await h.publish(AccountRegistered(account_id="beta", model="subscription", stripe_customer_id="cus_MeterTest2"))
    await h.publish(*jobs(3, minutes_ago(h, 10)), *jobs(2, minutes_ago(h, 8), prefix="k"),
                    *jobs(4, minutes_ago(h, 10), account="beta", prefix="b"))
    assert (await h.sender().send_due()).sent == 3
    first, second = await h.reports()
    refused = StripeEventReceived(
        stripe_event_id="evt_test_65MeterErrors", type=ERROR_REPORT, created=h.now, data_object={
            "developer_message_summary": "2 meter events could not be processed",
            "validation_start": iso(h.now - timedelta(minutes=1)), "validation_end": iso(h.now + timedelta(minutes=1)),
            "reason": {"error_count": 2, "error_types": [{
                "code": "meter_event_customer_not_found", "error_count": 2,
                "sample_errors": [{"error_message": f"No customer {CUSTOMER}",
                                   "request": {"identifier": f"{first.identifier}:1.1"}}],
            }]},
        })
    await h.publish(refused)
    failed = await h.reports()
    assert [(r.state, r.value) for r in failed] == [("failed", 3), ("failed", 2)]
    assert all(r.last_error and "meter_event_customer_not_found" in r.last_error for r in failed)
    assert [r.state for r in await h.reports("beta")] == ["sent"]  # another customer: untouched
    told = [e for e in await h.emitted() if e.event_type == "MeterUsageUnreportable"]
    assert sorted((e.identifier, e.reason) for e in told) == sorted(
        [(first.identifier, "rejected"), (second.identifier, "rejected")])
    await h.publish(refused)  # delivered again: nothing more fails, nothing more is said
    assert len([e for e in await h.emitted() if e.event_type == "MeterUsageUnreportable"]) == 2

    assert (await run_cli(h.settings, "stripe", "resend")).exit_code == 2  # says what to name
    result = await run_cli(h.settings, "stripe", "resend", "--account", "acme", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(r["identifier"] for r in json.loads(result.stdout)) == sorted([first.identifier, second.identifier])
    assert (await h.sender(at=datetime.now(UTC) + timedelta(seconds=1)).send_due()).sent == 2
    assert [(r.state, r.value) for r in await h.reports()] == [("sent", 3), ("sent", 2)]
    again = h.front.meter_events()[-2:]
    assert sorted(r.form["identifier"] for r in again) == sorted([first.identifier, second.identifier])
    assert all(r.idempotency_key == f"{r.form['identifier']}:2.1" for r in again)  # the second claim: a new key
    nothing = await run_cli(h.settings, "stripe", "resend", "--account", "acme", "--json")
    assert json.loads(nothing.stdout) == []


async def test_through_kafka_and_the_runtime(settings: Settings) -> None:
    with FakeMeterStripeFront(settings.stripe_api_base) as front:
        s = settings.model_copy(update={"stripe_api_base": front.url, "jobmeter_meter_poll_seconds": 0.1})
        runtime = build_runtime(s, ["accounts", "meter"])
        async with runtime.running(producer="test"):
            publisher = runtime.res.publisher
            await publisher.publish(AccountRegistered(account_id="acme", model="subscription",
                                                      stripe_customer_id=CUSTOMER))
            await eventually(lambda: _count(runtime, "SELECT count(*) FROM accounts.accounts"), lambda n: n == 1)
            at = datetime.now(UTC) - timedelta(minutes=5)
            batch = jobs(4, at)
            await publisher.publish_many(batch + batch[:2])  # two published twice
            await eventually(
                lambda: _count(runtime, "SELECT count(*) FROM meter.reports WHERE state = 'sent'"), lambda n: n == 1
            )
            await eventually(  # the relay put MeterUsageReported on the bus
                lambda: _count(runtime, "SELECT count(*) FROM meter.outbox WHERE sent_at IS NOT NULL"), lambda n: n == 1
            )
        records = await read_topic(s, Topics(s.jobmeter_topic_prefix).name("billing"), expect=1)
    [reported] = [REGISTRY.decode(r.value)[1] for r in records]
    assert isinstance(reported, MeterUsageReported)
    assert (reported.account_id, reported.value, reported.seq) == ("acme", 4, 0)
    assert [r.form["payload[value]"] for r in front.meter_events()] == ["4"]


async def _count(runtime: Any, sql: str) -> int:
    return int(await runtime.res.pool.fetchval(sql))
