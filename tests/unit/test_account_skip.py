"""PAYG and the meter pass over a job record unread when it is certainly of an account they know another billing
model bills (`jobs_account`, `Elsewhere`): a record they cannot be sure of is decoded as before."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import cast

import asyncpg
from hypothesis import given, settings
from hypothesis import strategies as st

from events.envelope import EnvelopeWriter
from events.jobs import JobCompleted, JobsCompleted, jobs_account, jobs_completed_wire
from projections.account_view import AccountView, Elsewhere
from projections.fold import Folder
from projections.meter.projection import MeterReporter
from projections.payg.config import PaygConfig
from projections.payg.projection import PaygBalances
from projections.projection import Projection
from projections.records import RawRecord
from tests.unit.test_channel_skip import CHANNELS, IDS

AT = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)
WRITER = EnvelopeWriter(producer="ingest", occurred_at=AT)


def job(account: str, job_id: str, channel: str = "direct") -> JobCompleted:
    return JobCompleted.model_validate({"account_id": account, "api": "extract", "job_id": job_id,
                                        "channel": channel, "mode": "sync", "completed_at": AT})


@settings(max_examples=300, deadline=None, database=None)
@given(IDS, st.lists(st.tuples(IDS, st.sampled_from(CHANNELS)), min_size=1, max_size=8), st.booleans())
def test_the_account_told_from_the_bytes_is_the_one_every_job_of_the_record_has(
    account: str, jobs: list[tuple[str, str]], alone: bool,
) -> None:
    events = [job(account, job_id, channel) for job_id, channel in jobs]
    value = (WRITER.encode(events[0], events[0].natural_id()) if alone
             else jobs_completed_wire(WRITER, account, events))
    told = jobs_account(value)
    assert told in (account, None)
    if "\\" not in value.decode():  # an id with "/" is written escaped by no one here: always told
        assert told == account


def test_a_record_that_could_mislead_is_not_told() -> None:
    lone = job("subs", "s-1")
    spaced = json.dumps({"event_id": str(uuid.uuid4()), "type": "JobCompleted", "version": 1,
                         "occurred_at": AT.isoformat(), "producer": "kcat", "data": lone.model_dump(mode="json")})
    newer = WRITER.encode(lone, uuid.uuid4()).replace(b'"version":1,', b'"version":2,', 1)
    escaped = jobs_completed_wire(WRITER, "subs", [lone]).replace(b'"producer":"ingest"', b'"producer":"in\\u0067est"')
    # JSON keeps the last of two keys: a first `data` naming another account must not decide.
    twice = jobs_completed_wire(WRITER, "paid", [job("paid", "p-1")]).replace(
        b'"data":{', b'"data":{"account_id":"subs","jobs":[]},"data":{', 1)
    other = WRITER.encode(JobsCompleted(account_id="subs", jobs=(lone,)), uuid.uuid4()).replace(
        b'"type":"JobsCompleted"', b'"type":"AccountRegistered"', 1)
    assert [jobs_account(v) for v in (spaced.encode(), newer, escaped, twice, other)] == [None] * 5
    assert jobs_account(jobs_completed_wire(WRITER, "subs", [lone])) == "subs"


def test_an_account_is_elsewhere_once_known_by_another_model() -> None:
    elsewhere = Elsewhere("payg")
    elsewhere.learn({"paid": AccountView("payg", None), "subs": AccountView("subscription", "cus_1"),
                     "rapid": AccountView("rapidapi", None)})
    assert elsewhere == {"subs", "rapid"}


def record(offset: int, account: str, value: bytes) -> RawRecord:
    return RawRecord("jobs", 0, offset, 1_796_000_000_000, account.encode(), value)


def folded(projection: Projection, records: list[RawRecord]) -> tuple[list[tuple[int, str]], list[int | None]]:
    good, dead = Folder(projection, cast(asyncpg.Pool, None)).decode(records)
    return [(r.offset, r.event.job_id) for r in good if isinstance(r.event, JobCompleted)], [d.offset for d in dead]


def test_payg_and_the_meter_pass_over_only_the_records_of_accounts_they_learnt_are_not_theirs() -> None:
    views = {"paid": AccountView("payg", None), "subs": AccountView("subscription", "cus_1")}
    records = [
        record(0, "paid", jobs_completed_wire(WRITER, "paid", [job("paid", "p-1")])),
        record(1, "subs", jobs_completed_wire(WRITER, "subs", [job("subs", "s-1")])),
        record(2, "subs", jobs_completed_wire(WRITER, "subs", [job("subs", "s-b")]).replace(b'"sync"', b'"later"')),
        record(3, "newcomer", jobs_completed_wire(WRITER, "newcomer", [job("newcomer", "n-1")])),
    ]
    payg, meter = PaygBalances(cast(PaygConfig, None)), MeterReporter()
    assert folded(payg, records) == ([(0, "p-1"), (1, "s-1"), (3, "n-1")], [2])  # nothing learnt yet
    payg.billed_elsewhere.learn(views)
    meter.billed_elsewhere.learn(views)
    assert folded(payg, records) == ([(0, "p-1"), (3, "n-1")], [])  # the subscription's, broken or not, unread
    assert folded(meter, records) == ([(1, "s-1"), (3, "n-1")], [2])  # the meter judges its own account's record
    assert MeterReporter().billed_elsewhere == set()  # learnt by the instance that folded: a new one starts empty
