"""A consumer that applies the jobs of one channel passes over a job record unread only when the record certainly
holds none of that channel's jobs (`holds_no_job_of`): a record it cannot be sure of is decoded as before."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import cast

import asyncpg
from hypothesis import given, settings
from hypothesis import strategies as st

from events.envelope import EnvelopeWriter
from events.jobs import JobCompleted, JobsCompleted, holds_no_job_of, jobs_completed_wire
from events.registry import REGISTRY
from events.types import Channel
from projections import catalog
from projections.fold import Folder
from projections.records import RawRecord

AT = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)
WRITER = EnvelopeWriter(producer="ingest", occurred_at=AT)
CHANNELS: tuple[Channel, ...] = ("direct", "rapidapi")


def job(job_id: str, channel: Channel, *, api: str = "extract") -> JobCompleted:
    return JobCompleted(account_id="acme", api=api, job_id=job_id, channel=channel, mode="sync", completed_at=AT)


def record(value: bytes, offset: int = 0) -> RawRecord:
    return RawRecord("jobs", 0, offset, 1_796_000_000_000, b"acme", value)


def channels_in(value: bytes) -> set[str]:
    _, event = REGISTRY.decode(value)
    return {fact.channel for fact in event.facts() if isinstance(fact, JobCompleted)}


IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,30}\Z")
APIS = st.sampled_from(["extract", "classify", "direct", "rapidapi", "rapid"])  # API names may be a channel's too
JOBS = st.builds(job, IDS, st.sampled_from(CHANNELS), api=APIS)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(JOBS, min_size=1, max_size=12), st.booleans())
def test_a_record_is_passed_over_only_when_it_holds_no_job_of_the_channel(jobs: list[JobCompleted],
                                                                          alone: bool) -> None:
    value = (WRITER.encode(jobs[0], jobs[0].natural_id()) if alone
             else jobs_completed_wire(WRITER, "acme", jobs))
    present = channels_in(value)
    for channel in CHANNELS:
        if holds_no_job_of(value, channel):
            assert channel not in present
        elif channel not in present:
            # Unsure only where the channel's name is some other string of the record: an API name or job id.
            assert any(channel in (j.api, j.job_id) for j in (jobs[:1] if alone else jobs))


def test_what_ingest_writes_is_passed_over_by_the_other_channel() -> None:
    direct = jobs_completed_wire(WRITER, "acme", [job("d-1", "direct"), job("d-2", "direct")])
    rapid = jobs_completed_wire(WRITER, "acme", [job("r-1", "rapidapi")])
    mixed = jobs_completed_wire(WRITER, "acme", [job("m-1", "rapidapi"), job("m-2", "direct")])
    assert [holds_no_job_of(v, "direct") for v in (direct, rapid, mixed)] == [False, True, False]
    assert [holds_no_job_of(v, "rapidapi") for v in (direct, rapid, mixed)] == [True, False, False]
    lone = job("l-1", "rapidapi")
    assert holds_no_job_of(WRITER.encode(lone, uuid.uuid4()), "direct")


def test_an_escaped_channel_name_is_decoded_not_passed_over() -> None:
    value = jobs_completed_wire(WRITER, "acme", [job("e-1", "direct")]).replace(b'"direct"', b'"\\u0064irect"')
    assert channels_in(value) == {"direct"}
    assert not holds_no_job_of(value, "direct")


def test_another_layout_or_version_is_decoded_not_passed_over() -> None:
    rapid = job("r-1", "rapidapi")
    spaced = json.dumps({"event_id": str(uuid.uuid4()), "type": "JobCompleted", "version": 1,
                         "occurred_at": AT.isoformat(), "producer": "kcat",
                         "data": rapid.model_dump(mode="json")}).encode()
    newer = WRITER.encode(rapid, uuid.uuid4()).replace(b'"version":1,', b'"version":2,', 1)
    other = WRITER.encode(JobsCompleted(account_id="acme", jobs=(rapid,)), uuid.uuid4()).replace(
        b'"type":"JobsCompleted"', b'"type":"JobsCompletes"', 1)
    assert channels_in(spaced) == {"rapidapi"}
    assert [holds_no_job_of(v, "direct") for v in (spaced, newer, other)] == [False, False, False]


def folder(name: str) -> Folder:
    return Folder(catalog.get(name), cast(asyncpg.Pool, None))


def test_the_folder_of_a_channels_projection_decodes_only_records_that_may_hold_its_jobs() -> None:
    rapid = record(jobs_completed_wire(WRITER, "acme", [job("r-1", "rapidapi"), job("r-2", "rapidapi")]), 0)
    direct = record(jobs_completed_wire(WRITER, "acme", [job("d-1", "direct")]), 1)
    broken = record(jobs_completed_wire(WRITER, "acme", [job("b-1", "rapidapi")]).replace(b'"sync"', b'"later"'), 2)
    for name in ("meter", "payg"):
        good, dead = folder(name).decode([rapid, direct, broken])
        assert [(r.offset, r.event.job_id) for r in good if isinstance(r.event, JobCompleted)] == [(1, "d-1")]
        assert dead == []  # not its record to judge: the ledger, which reads every job, dead-letters it
    good, dead = folder("rapidapi").decode([rapid, direct, broken])
    assert [(r.offset, r.event.job_id) for r in good if isinstance(r.event, JobCompleted)] == [(0, "r-1"), (0, "r-2")]
    assert [d.offset for d in dead] == [2]
    good, dead = folder("ledger").decode([rapid, direct, broken])
    assert len(good) == 3 and [d.offset for d in dead] == [2]


def test_only_the_projections_that_apply_one_channel_pass_records_over() -> None:
    assert {p.name: p.channel for p in catalog.PROJECTIONS.values() if p.channel} == {
        "meter": "direct", "payg": "direct", "rapidapi": "rapidapi"}
