"""A request's jobs in one record (`JobsCompleted`): read back as the jobs they are, in order, each keeping the
identity it has when published alone, and a batch that breaks the contract refused with a reason."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import cast
from unittest.mock import AsyncMock, patch

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from events.codec import DecodeError, NotYetReadable
from events.deadletters import DeadLettered
from events.envelope import EVENT_NAMESPACE, Envelope, EnvelopeWriter, Event, fact_id
from events.jobs import JobCompleted, JobsCompleted, job_event_id, jobs_completed_wire, jobs_event_id_text
from events.registry import REGISTRY
from projections import catalog
from projections.fold import Folder, FoldOutcome
from projections.ledger.projection import UsageLedger
from projections.letters import alone, dead_letter
from projections.records import RawRecord, Recorded, logged_at
from services.ledger.ingest import JOBS_PER_RECORD, by_account

AT = datetime(2026, 11, 24, 10, 15, tzinfo=UTC)
LOGGED_MS = 1_796_000_000_123


def job(account: str, job_id: str, *, api: str = "extract", mode: str = "sync") -> JobCompleted:
    return JobCompleted(account_id=account, api=api, job_id=job_id, channel="direct", mode=mode, completed_at=AT)


def wire(event: Event, event_id: uuid.UUID) -> bytes:
    """The record's value as a publisher writes it."""
    return EnvelopeWriter(producer="test", occurred_at=AT).encode(event, event_id)


def folder() -> Folder:
    """A folder for decoding only: `Folder.decode` never touches the pool."""
    return Folder(catalog.get("ledger"), cast(asyncpg.Pool, None))


BATCH = JobsCompleted(account_id="acme", jobs=(job("acme", "j-2"), job("acme", "j-1"),
                                               job("acme", "j-3", api="classify", mode="async")))


def test_a_batch_decodes_as_its_jobs_in_order() -> None:
    envelope, event = REGISTRY.decode(wire(BATCH, BATCH.natural_id()))
    assert envelope.type == "JobsCompleted" and envelope.event_id == BATCH.natural_id()
    assert event == BATCH
    assert list(event.facts()) == [job("acme", "j-2"), job("acme", "j-1"), job("acme", "j-3", api="classify",
                                                                                  mode="async")]
    assert list(job("acme", "j-1").facts()) == [job("acme", "j-1")]  # a lone job is its one fact


def test_a_job_of_another_account_refuses_the_whole_batch_naming_it() -> None:
    mixed = JobsCompleted.model_construct(account_id="acme", jobs=(job("acme", "j-1"), job("globex", "j-2")))
    with pytest.raises(DecodeError) as caught:
        REGISTRY.decode(wire(mixed, uuid.uuid4()))
    assert not isinstance(caught.value, NotYetReadable)  # dead-lettered, not held for a newer reader
    reason = caught.value.reason
    assert reason.startswith("invalid JobsCompleted")
    assert "jobs.1.account_id" in reason and "'globex'" in reason and "'acme'" in reason, reason
    with pytest.raises(ValidationError, match="jobs.1.account_id 'globex' is not the batch's 'acme'"):
        JobsCompleted(account_id="acme", jobs=(job("acme", "j-1"), job("globex", "j-2")))


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(DecodeError, match="jobs"):
        REGISTRY.decode(wire(JobsCompleted.model_construct(account_id="acme", jobs=()), uuid.uuid4()))
    with pytest.raises(ValidationError):
        JobsCompleted(account_id="acme", jobs=())


def test_a_batch_is_named_by_its_jobs_identities() -> None:
    again = JobsCompleted(account_id="acme", jobs=(job("acme", "j-2", mode="async"), job("acme", "j-1"),
                                                   job("acme", "j-3", api="classify")))
    assert again.natural_id() == BATCH.natural_id()  # the same jobs, however they were seen
    assert BATCH.natural_id() == uuid.uuid5(
        EVENT_NAMESPACE, "\x1f".join(["jobs", "extract", "j-2", "extract", "j-1", "classify", "j-3"]))
    assert jobs_event_id_text(BATCH.jobs) == str(BATCH.natural_id())
    others = [
        BATCH.jobs[:2],  # fewer
        (*BATCH.jobs, job("acme", "j-4")),  # more
        (job("acme", "j-2"), job("acme", "j-1"), job("acme", "j-3")),  # one on another API
        (BATCH.jobs[1], BATCH.jobs[0], BATCH.jobs[2]),  # another order
    ]
    ids = {JobsCompleted(account_id="acme", jobs=jobs).natural_id() for jobs in others}
    assert len(ids) == len(others) and BATCH.natural_id() not in ids
    assert {jobs_event_id_text(jobs) for jobs in others} == {str(i) for i in ids}
    # A one-job batch is not that job: the record and the job it carries are two things.
    assert JobsCompleted(account_id="acme", jobs=(job("acme", "j-1"),)).natural_id() != job_event_id("extract", "j-1")


def test_a_lone_job_has_its_envelopes_id_even_when_it_is_not_the_natural_one() -> None:
    given = uuid.uuid4()
    envelope, event = REGISTRY.decode(wire(job("acme", "j-1"), given))
    assert fact_id(envelope, event) == given != job_event_id("extract", "j-1")


def test_a_job_of_a_batch_has_its_own_natural_id() -> None:
    envelope, event = REGISTRY.decode(wire(BATCH, uuid.uuid4()))
    assert [fact_id(envelope, fact) for fact in event.facts()] == [
        job_event_id("extract", "j-2"), job_event_id("extract", "j-1"), job_event_id("classify", "j-3")]


def test_a_job_of_a_batch_dead_lettered_alone_reads_as_that_job_alone() -> None:
    envelope, event = REGISTRY.decode(wire(BATCH, BATCH.natural_id()))
    item = Recorded("jobs", 0, 7, AT, envelope, event.facts()[1])
    lone = alone(item)
    assert (lone.type, lone.event_id, lone.producer, lone.occurred_at) == (
        "JobCompleted", job_event_id("extract", "j-1"), "test", AT)
    again, fact = REGISTRY.decode(lone.model_dump_json().encode())
    assert fact == job("acme", "j-1") and fact_id(again, fact) == job_event_id("extract", "j-1")
    single = Envelope.wrap(job("acme", "j-1"), producer="test", event_id=uuid.uuid4())
    assert alone(Recorded("jobs", 0, 8, AT, single, job("acme", "j-1"))) is single


def test_by_account_groups_in_first_seen_order_keeping_each_accounts_order() -> None:
    jobs = [job("b", "1"), job("a", "2"), job("b", "3"), job("c", "4"), job("a", "5"), job("b", "6")]
    groups = by_account(jobs)
    assert [(account, [j.job_id for j in group]) for account, group in groups] == [
        ("b", ["1", "3", "6"]), ("a", ["2", "5"]), ("c", ["4"])]


def test_by_account_splits_an_account_past_jobs_per_record() -> None:
    mine = [job("a", f"a{n}") for n in range(2 * JOBS_PER_RECORD + 1)]
    groups = by_account([*mine[:5], job("b", "b0"), *mine[5:]])
    assert [(account, len(group)) for account, group in groups] == [
        ("a", JOBS_PER_RECORD), ("a", JOBS_PER_RECORD), ("a", 1), ("b", 1)]
    assert [j for _, group in groups[:3] for j in group] == mine
    assert [len(group) for _, group in by_account(mine[:JOBS_PER_RECORD])] == [JOBS_PER_RECORD]


def test_folder_decode_makes_one_recorded_per_job_at_its_records_position() -> None:
    lone = job("globex", "g-1")
    records = [
        RawRecord("jobs", 0, 7, LOGGED_MS, b"acme", wire(BATCH, BATCH.natural_id())),
        RawRecord("jobs", 1, 3, LOGGED_MS + 1, b"globex", wire(lone, lone.natural_id() or uuid.uuid4())),
    ]
    good, dead = folder().decode(records)
    assert dead == []
    assert [(r.topic, r.partition, r.offset, r.logged_at, r.event) for r in good] == [
        *[("jobs", 0, 7, logged_at(LOGGED_MS), j) for j in BATCH.jobs],
        ("jobs", 1, 3, logged_at(LOGGED_MS + 1), lone),
    ]
    assert {r.envelope.type for r in good[:3]} == {"JobsCompleted"} and good[3].envelope.type == "JobCompleted"


def test_folder_decode_dead_letters_a_mixed_batch_whole() -> None:
    mixed = JobsCompleted.model_construct(account_id="acme", jobs=(job("acme", "j-1"), job("globex", "j-2")))
    good, dead = folder().decode([RawRecord("jobs", 2, 9, LOGGED_MS, b"acme", wire(mixed, uuid.uuid4()))])
    assert good == []
    assert [(d.partition, d.offset, d.key) for d in dead] == [(2, 9, "acme")]
    assert "jobs.1.account_id" in dead[0].reason


async def outcome_of(records: list[RawRecord], dead: list[RawRecord]) -> FoldOutcome:
    """`Folder._fold_group`'s count where every record was fresh and these were dead-lettered (one letter each)."""
    letters = [dead_letter(r, "payg", "could not apply: x") for r in dead]
    with patch.object(Folder, "_fold", AsyncMock(return_value=(records, letters, 0))):
        return await folder()._fold_group(records)


async def test_a_record_two_of_whose_jobs_were_dead_lettered_is_one_record_not_applied() -> None:
    records = [RawRecord("jobs", 0, 5, LOGGED_MS, b"a", b"{}"), RawRecord("jobs", 0, 6, LOGGED_MS, b"a", b"{}")]
    outcome = await outcome_of(records, [records[0], records[0]])  # two jobs of one batch, each alone
    assert (outcome.applied, outcome.dead) == (1, 2)


async def test_records_of_two_topics_at_one_position_dead_lettered_are_two_records_not_applied() -> None:
    records = [RawRecord("jobs", 0, 5, LOGGED_MS, b"a", b"{}"), RawRecord("payg", 0, 5, LOGGED_MS, b"a", b"{}"),
               RawRecord("payg", 0, 6, LOGGED_MS, b"a", b"{}")]
    outcome = await outcome_of(records, records[:2])
    assert (outcome.applied, outcome.dead) == (1, 2)


class Refusing(UsageLedger):
    """The ledger, refusing every job whose id starts with "bad" as its data would (a ValueError)."""

    applied: list[str]

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        if any(getattr(item.event, "job_id", "").startswith("bad") for item in events):
            raise ValueError("refused")
        self.applied += [getattr(item.event, "job_id", "") for item in events]


class Savepoints:
    """A connection whose savepoints only pass errors on: the careful path's use of it."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield


async def dead_letters_of_a_batch_with_two_bad_jobs() -> tuple[list[str], list[DeadLettered]]:
    batch = JobsCompleted(account_id="acme", jobs=(job("acme", "j-1"), job("acme", "bad-2"), job("acme", "bad-3")))
    projection = Refusing()
    projection.applied = []
    record = RawRecord("jobs", 0, 7, LOGGED_MS, b"acme", wire(batch, batch.natural_id()))
    dead = await Folder(projection, cast(asyncpg.Pool, None))._apply_isolating(
        cast(asyncpg.Connection, Savepoints()), [record])
    return projection.applied, dead


async def test_the_careful_path_dead_letters_each_bad_job_of_a_batch_alone() -> None:
    applied, dead = await dead_letters_of_a_batch_with_two_bad_jobs()
    assert applied == ["j-1"]
    assert [(d.source, d.partition, d.offset) for d in dead] == [("jobs", 0, 7), ("jobs", 0, 7)]
    lone = [REGISTRY.decode(d.payload.encode()) for d in dead]
    assert [(e.type, e.event_id, getattr(f, "job_id", None)) for e, f in lone] == [
        ("JobCompleted", job_event_id("extract", "bad-2"), "bad-2"),
        ("JobCompleted", job_event_id("extract", "bad-3"), "bad-3")]


async def test_two_jobs_of_one_batch_dead_lettered_alone_are_two_dead_letters() -> None:
    _, dead = await dead_letters_of_a_batch_with_two_bad_jobs()
    assert len({letter.natural_id() for letter in dead}) == 2
    assert [letter.fact for letter in dead] == [job_event_id("extract", "bad-2"), job_event_id("extract", "bad-3")]


ACCOUNTS = st.sampled_from(["a", "b", "acct_3", "x.y@z"])
IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,40}\Z")
APIS = st.from_regex(r"\A[a-z][a-z0-9_-]{0,20}\Z")
ZONES = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
MOMENTS = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES)
JOBS = st.builds(JobCompleted, account_id=ACCOUNTS, api=APIS, job_id=IDS,
                 channel=st.sampled_from(["direct", "rapidapi"]), mode=st.sampled_from(["sync", "async"]),
                 completed_at=MOMENTS)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(JOBS, min_size=1, max_size=30), st.integers(1, 4) | st.just(JOBS_PER_RECORD))
def test_jobs_batched_by_account_come_back_as_exactly_those_jobs(jobs: list[JobCompleted], per_record: int) -> None:
    with patch("services.ledger.ingest.JOBS_PER_RECORD", per_record):
        groups = by_account(jobs)
    writer = EnvelopeWriter(producer="ingest", occurred_at=AT)
    values = [jobs_completed_wire(writer, account, group) for account, group in groups]
    # Byte for byte what the model makes, though made without it.
    batches = [JobsCompleted(account_id=account, jobs=tuple(group)) for account, group in groups]
    assert values == [writer.encode(b, b.natural_id()) for b in batches]
    read = [REGISTRY.decode(value) for value in values]
    assert all(0 < len(event.facts()) <= per_record for _, event in read)
    assert [envelope.event_id for envelope, _ in read] == [b.natural_id() for b in batches]
    back = [fact for _, event in read for fact in event.facts()]
    assert len(back) == len(jobs)
    for account in {j.account_id for j in jobs}:
        assert [f for f in back if isinstance(f, JobCompleted) and f.account_id == account] == \
            [j for j in jobs if j.account_id == account]


def test_a_v1_dead_letter_reads_as_one_about_its_whole_record_and_keeps_its_id() -> None:
    fields = {"source": "jobs", "consumer": "ledger", "reason": "not an event envelope", "partition": 0,
              "offset": 5, "key": "acme", "payload": "garbage"}
    v1_id = uuid.uuid5(EVENT_NAMESPACE, "\x1f".join(("dead", "ledger", "jobs", "0", "5")))
    raw = Envelope(event_id=v1_id, type="DeadLettered", version=1, occurred_at=AT, producer="ledger", data=fields)
    _, letter = REGISTRY.decode(raw.model_dump_json().encode())
    assert isinstance(letter, DeadLettered) and letter.fact is None
    assert letter.natural_id() == v1_id  # a letter published again after the upgrade is still the same letter
