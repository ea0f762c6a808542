"""What the publisher puts on the wire must stay byte for byte what it was at 44b92e9, whatever the jobs: consumers,
the outbox and the dead letters read these bytes, and a job's event id must not change between two publications.
Ingest puts a request's jobs out as `JobsCompleted` records, one per account, in that same wire form."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import cast
from unittest.mock import AsyncMock, patch
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from events.envelope import EVENT_NAMESPACE, Event, fact_id, natural_event_id_text
from events.jobs import JobCompleted, JobsCompleted, LegacyOperation, jobs_event_id_text
from events.publisher import Publisher
from events.registry import REGISTRY
from services.ledger.ingest import JOBS_PER_RECORD, ingest_valid
from services.platform.resources import Resources

IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,40}\Z")
APIS = st.from_regex(r"\A[a-z][a-z0-9_-]{0,20}\Z")
ZONES = st.one_of(
    st.just(UTC),
    st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59),
                                      max_value=timedelta(hours=23, minutes=59))),
    st.timezones(),
)
MOMENTS = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES)
JOBS = st.builds(JobCompleted, account_id=IDS, api=APIS, job_id=IDS, channel=st.sampled_from(["direct", "rapidapi"]),
                 mode=st.sampled_from(["sync", "async"]), completed_at=MOMENTS)
# Jobs of a few accounts, so that a request's jobs share records
FEW_ACCOUNTS = st.sampled_from(["a", "b", "acct_3"]) | IDS
SHARED = st.builds(JobCompleted, account_id=FEW_ACCOUNTS, api=APIS, job_id=IDS,
                   channel=st.sampled_from(["direct", "rapidapi"]), mode=st.sampled_from(["sync", "async"]),
                   completed_at=MOMENTS)
LEGACY = st.builds(LegacyOperation, kind=st.sampled_from(["pages_processed", "job_failed"]), account_id=IDS,
                   api=APIS, job_id=IDS, occurred_at=MOMENTS, pages=st.integers(0, 10**12),
                   channel=st.sampled_from(["direct", "rapidapi"]))
PRODUCERS = st.text(min_size=1, max_size=20)
EXAMPLES = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

Record = tuple[str, bytes | None, bytes]


def committed_record(publisher: Publisher, event: Event, event_id: uuid.UUID, occurred_at: datetime) -> Record:
    """`Publisher.publish_many`'s record for one event as 44b92e9 built it (EnvelopeWriter.encode), kept here
    verbatim as the reference: the wire form, not the codec's (that one writes UTC as `Z` and non-ASCII raw)."""
    tail = json.dumps({"occurred_at": occurred_at.isoformat(), "producer": publisher.producer_name},
                      separators=(",", ":"))[1:-1].encode()
    head = b'","type":%s,"version":%d,%s,"data":' % (json.dumps(event.event_type).encode(), event.version, tail)
    value = b'{"event_id":"%s%s%s}' % (str(event_id).encode(), head, event.__pydantic_serializer__.to_json(event))
    return publisher.topics.name(event.topic), event.partition_key().encode(), value


class Capturing(Publisher):
    """A publisher whose records are kept instead of sent."""

    def __init__(self, producer: str) -> None:
        super().__init__("127.0.0.1:1", producer=producer)
        self.records: list[Record] = []

    async def _send_batches(self, records: Iterable[Record]) -> None:
        self.records += records


def published(producer: str, occurred_at: datetime, events: Sequence[Event],
              event_ids: Sequence[uuid.UUID | None]) -> tuple[list[Record], list[uuid.UUID], list[Record]]:
    """What `publish_many` hands to Kafka and returns, with the committed records for the same events."""

    async def run() -> tuple[list[Record], list[uuid.UUID], list[Record]]:
        publisher = await capturing(producer)
        with patch("events.publisher.utcnow", return_value=occurred_at):
            ids = await publisher.publish_many(events, event_ids=event_ids)
        expected = [committed_record(publisher, e, i, occurred_at) for e, i in zip(events, ids, strict=True)]
        return publisher.records, ids, expected

    return asyncio.run(run())


def published_as_ingest(producer: str, occurred_at: datetime, jobs: Sequence[JobCompleted],
                        ) -> tuple[list[Record], list[Record]]:
    """What `ingest_valid` hands to Kafka for these jobs, none received before, with the committed records of the
    `JobsCompleted` the jobs make: per account in the order first seen, its jobs in order, JOBS_PER_RECORD a record
    at most, each named by its natural id."""

    async def run() -> tuple[list[Record], list[Record]]:
        publisher = await capturing(producer)
        res = cast(Resources, SimpleNamespace(
            publisher=publisher, settings=SimpleNamespace(jobmeter_ingest_publish_timeout_seconds=10.0)))
        with patch("services.ledger.ingest.utcnow", return_value=occurred_at), \
                patch("services.ledger.ingest._received_and_unknown", AsyncMock(return_value=(set(), []))), \
                patch("services.ledger.ingest._record_receipts", AsyncMock(return_value=len(jobs))):
            result = await ingest_valid(list(jobs), 0, [], res)
        assert result.accepted == len(jobs)
        expected = []
        for account in dict.fromkeys(job.account_id for job in jobs):
            mine = [job for job in jobs if job.account_id == account]
            for start in range(0, len(mine), JOBS_PER_RECORD):
                batch = JobsCompleted(account_id=account, jobs=tuple(mine[start:start + JOBS_PER_RECORD]))
                expected.append(committed_record(publisher, batch, batch.natural_id(), occurred_at))
        return publisher.records, expected

    return asyncio.run(run())


async def capturing(producer: str) -> Capturing:
    publisher = Capturing(producer)
    await publisher._producer.stop()  # never started: closed, so nothing warns of it
    return publisher


@EXAMPLES
@given(st.lists(JOBS, min_size=1, max_size=12), PRODUCERS, MOMENTS)
@example([JobCompleted(account_id="a", api="x", job_id="j", channel="direct", mode="sync",  # a repeated hour
                       completed_at=datetime(2011, 9, 12, 23, tzinfo=ZoneInfo("Asia/Ust-Nera"), fold=1))],
         "p", datetime(2026, 1, 1, tzinfo=UTC))
def test_a_batch_of_jobs_goes_out_as_the_committed_bytes(jobs: list[JobCompleted], producer: str,
                                                        occurred_at: datetime) -> None:
    records, ids, expected = published(producer, occurred_at, jobs, [None] * len(jobs))
    assert records == expected
    assert ids == [uuid.uuid5(EVENT_NAMESPACE, f"job\x1f{j.api}\x1f{j.job_id}") for j in jobs]
    # Read back as the events they were, where every offset is whole minutes: ISO 8601 has no seconds in an offset,
    # so pydantic writes and reads such a moment otherwise (already so at 44b92e9; every real one is UTC).
    if all(whole_minutes(m) for m in (occurred_at, *(j.completed_at for j in jobs))):
        for (_, _, value), job in zip(records, jobs, strict=True):
            assert in_utc(REGISTRY.decode(value)[1]) == in_utc(job)


@EXAMPLES
@given(st.lists(SHARED, min_size=1, max_size=12), PRODUCERS, MOMENTS)
@example([JobCompleted(account_id="a", api="x", job_id="j", channel="direct", mode="sync",  # a repeated hour
                       completed_at=datetime(2011, 9, 12, 23, tzinfo=ZoneInfo("Asia/Ust-Nera"), fold=1))],
         "p", datetime(2026, 1, 1, tzinfo=UTC))
def test_ingest_puts_a_requests_jobs_out_as_one_record_per_account(jobs: list[JobCompleted], producer: str,
                                                                   occurred_at: datetime) -> None:
    records, expected = published_as_ingest(producer, occurred_at, jobs)
    assert records == expected
    assert [key for _, key, _ in records] == [a.encode() for a in dict.fromkeys(j.account_id for j in jobs)]
    if all(whole_minutes(m) for m in (occurred_at, *(j.completed_at for j in jobs))):
        read = [REGISTRY.decode(value) for _, _, value in records]
        assert [in_utc(job) for _, batch in read for job in batch.facts()] == \
            [in_utc(job) for a in dict.fromkeys(j.account_id for j in jobs) for job in jobs if job.account_id == a]
        # A job read from a batch keeps the event id it had when published alone.
        assert {fact_id(envelope, job) for envelope, batch in read for job in batch.facts()} == \
            {uuid.uuid5(EVENT_NAMESPACE, f"job\x1f{j.api}\x1f{j.job_id}") for j in jobs}


def test_ingest_splits_an_accounts_jobs_past_jobs_per_record() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    jobs = [JobCompleted(account_id="b" if n == 1 else "a", api="x", job_id=f"j{n}", channel="direct", mode="sync",
                         completed_at=moment) for n in range(2 * JOBS_PER_RECORD + 2)]
    records, expected = published_as_ingest("p", moment, jobs)
    assert records == expected
    assert [key for _, key, _ in records] == [b"a", b"a", b"a", b"b"]
    sizes = [len(REGISTRY.decode(value)[1].facts()) for _, _, value in records]
    assert sizes == [JOBS_PER_RECORD, JOBS_PER_RECORD, 1, 1]


def in_utc(job: Event) -> Event:
    """The job with its moment in UTC: read back, a moment carries a fixed offset, and Python never finds a moment of
    a zone's repeated hour (fold=1) equal to one in another zone, even the same instant (hypothesis found one)."""
    assert isinstance(job, JobCompleted)
    return job.model_copy(update={"completed_at": job.completed_at.astimezone(UTC)})


def whole_minutes(moment: datetime) -> bool:
    offset = moment.utcoffset()
    return offset is not None and offset % timedelta(minutes=1) == timedelta(0)


@EXAMPLES
@given(st.lists(st.one_of(JOBS, LEGACY), min_size=1, max_size=12), PRODUCERS, MOMENTS)
def test_mixed_events_and_given_ids_go_out_as_the_committed_bytes(events: list[Event], producer: str,
                                                                 occurred_at: datetime) -> None:
    given_ids = [None if isinstance(e, JobCompleted) else uuid.uuid5(EVENT_NAMESPACE, f"given-{i}")
                 for i, e in enumerate(events)]
    records, ids, expected = published(producer, occurred_at, events, given_ids)
    assert records == expected
    assert all(given is None or given == made for given, made in zip(given_ids, ids, strict=True))


@EXAMPLES
@given(st.lists(st.text(max_size=30), min_size=1, max_size=4))
def test_an_id_as_text_is_uuid5_of_the_joined_parts(parts: list[str]) -> None:
    assert natural_event_id_text(*parts) == str(uuid.uuid5(EVENT_NAMESPACE, "\x1f".join(parts)))


@EXAMPLES
@given(st.lists(JOBS, min_size=1, max_size=12))
def test_ingest_names_a_record_by_its_jobs(jobs: list[JobCompleted]) -> None:
    batch = JobsCompleted(account_id="a", jobs=tuple(job.model_copy(update={"account_id": "a"}) for job in jobs))
    assert jobs_event_id_text(batch.jobs) == str(batch.natural_id())
    assert batch.natural_id() == uuid.uuid5(EVENT_NAMESPACE, "\x1f".join(
        ["jobs", *(part for job in jobs for part in (job.api, job.job_id))]))
