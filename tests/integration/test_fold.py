"""The fold itself, on the real stack: redelivery applies nothing twice; a record the data makes fail is
dead-lettered alone while the rest of its batch is applied, whichever chunk it sits in; unreadable bytes are
dead-lettered with a reason; a batch folded side by side commits per partition group, and its retry applies only
what had not committed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import ClassVar

import asyncpg
import pytest
from prometheus_client import REGISTRY

from events.codec import EventRegistry, encode
from events.deadletters import DeadLettered
from events.envelope import Envelope, Event
from events.jobs import JobCompleted
from events.registry import REGISTRY as EVENTS
from jobmeter.settings import Settings
from projections.fold import Folder
from projections.records import RawRecord, Recorded
from tests.integration.probe import Probe, probe_pool

pytestmark = pytest.mark.integration


class SideBySideProbe(Probe):
    side_by_side = 2

    def __init__(self) -> None:
        self.failed_once = False

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        if not self.failed_once and any(e.event.job_id == "flaky" for e in events if isinstance(e.event, JobCompleted)):
            self.failed_once = True
            raise ConnectionResetError("the server went away")  # transient: the whole group rolls back
        await super().apply(conn, events)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    async with probe_pool(settings) as opened:
        yield opened


class Letters(list[DeadLettered]):
    """A dead-letter sink that keeps what it is sent."""

    async def __call__(self, batch: Sequence[DeadLettered]) -> None:
        self.extend(batch)


def record(offset: int, job_id: str | None, partition: int = 0) -> RawRecord:
    if job_id is None:
        value = b"{broken"
    else:
        job = JobCompleted(account_id="acme", api="extract", job_id=job_id, channel="direct", mode="sync",
                           completed_at=datetime(2026, 11, 1, tzinfo=UTC))
        value = encode(Envelope.wrap(job, producer="test"))
    return RawRecord("t.jobs", partition, offset, 1_700_000_000_000, b"acme", value)


async def seen_and_positions(pool: asyncpg.Pool) -> tuple[list[str], dict[int, int]]:
    async with pool.acquire() as conn:
        seen = sorted(r["job_id"] for r in await conn.fetch("SELECT job_id FROM probe.seen"))
        stored = {r["partition"]: r["next_offset"] for r in await conn.fetch("SELECT * FROM probe.positions")}
    return seen, stored


async def test_redelivery_poison_and_garbage(pool: asyncpg.Pool) -> None:
    letters = Letters()
    folder = Folder(Probe(), pool, dead_letters=letters)
    first = [record(0, "a"), record(1, "poison-1"), record(2, None), record(3, "b")]
    outcome = await folder.fold(first)
    assert (outcome.applied, outcome.skipped, outcome.dead) == (2, 0, 2)
    again = await folder.fold([*first, record(4, "c")])  # a redelivery overlapping what was applied
    assert (again.applied, again.skipped, again.dead) == (1, 4, 0)
    assert await seen_and_positions(pool) == (["a", "b", "c"], {0: 5})
    reasons = {letter.offset: letter.reason for letter in letters}
    assert set(reasons) == {1, 2}
    assert "could not apply" in reasons[1] and "seen_job_id_check" in reasons[1]
    assert "not an event envelope" in reasons[2]
    assert letters[0].natural_id() != letters[1].natural_id()


async def test_poison_in_a_later_chunk_rolls_back_the_pipeline_and_is_isolated(pool: asyncpg.Pool) -> None:
    letters = Letters()
    folder = Folder(Probe(), pool, dead_letters=letters, chunk=2)  # four chunks: the poison is in the third
    batch = [record(i, "poison-x" if i == 5 else f"job-{i}") for i in range(8)]
    outcome = await folder.fold(batch)
    assert (outcome.applied, outcome.skipped, outcome.dead) == (7, 0, 1)
    seen, stored = await seen_and_positions(pool)
    assert seen == sorted(f"job-{i}" for i in range(8) if i != 5)
    assert stored == {0: 8}
    assert [letter.offset for letter in letters] == [5]


class Idempotent(Probe):
    """Applies a job again without an error (as most projections do), so only the positions' lock keeps two
    consumers from both counting a batch as theirs."""

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        ids = [e.event.job_id for e in events if isinstance(e.event, JobCompleted)]
        await conn.execute("INSERT INTO seen SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", ids)


async def test_two_consumers_folding_one_batch_at_once_apply_it_once(pool: asyncpg.Pool) -> None:
    """During a rebalance two consumers can hold a partition for a moment: the first to lock its positions applies
    the batch, the other waits on the lock and then skips it all. They lock in one order whatever order their
    batches come in, so neither waits on the other forever."""
    letters = Letters()
    for n in range(3):  # a few rounds: which of the two locks first is up to the scheduler
        batch = [record(40 * n + i, f"r{n}-p{p}-{i}", partition=p) for p in (0, 1) for i in range(40)]
        outcomes = await asyncio.gather(Folder(Idempotent(), pool, dead_letters=letters).fold(batch),
                                        Folder(Idempotent(), pool, dead_letters=letters).fold(batch[40:] + batch[:40]))
        assert sorted((o.applied, o.skipped) for o in outcomes) == [(0, 80), (80, 0)]
        seen, stored = await seen_and_positions(pool)
        assert len(seen) == 80 * (n + 1) and stored == {0: 40 * (n + 1), 1: 40 * (n + 1)}
    assert letters == []


async def test_side_by_side_groups_commit_apart_and_the_retry_applies_only_the_rest(pool: asyncpg.Pool) -> None:
    folder = Folder(SideBySideProbe(), pool, chunk=2)
    # Partitions 0 and 1 carry three records each, 2 and 3 one each: the groups are {0, 2} and {1, 3}.
    batch = [record(o, f"p{p}-{o}", partition=p) for p in (0, 1) for o in range(3)]
    batch += [record(0, "flaky", partition=2), record(0, "p3-0", partition=3)]
    with pytest.raises(ConnectionResetError):
        await folder.fold(batch)
    seen, stored = await seen_and_positions(pool)
    assert seen == ["p1-0", "p1-1", "p1-2", "p3-0"]  # the other group committed on its own
    assert {p: o for p, o in stored.items() if o} == {1: 3, 3: 1}

    again = await folder.fold(batch)  # what the consumer's retry does
    assert (again.applied, again.skipped, again.dead) == (4, 4, 0)
    seen, stored = await seen_and_positions(pool)
    assert seen == sorted(["flaky", "p3-0"] + [f"p{p}-{o}" for p in (0, 1) for o in range(3)])
    assert stored == {0: 3, 1: 3, 2: 1, 3: 1}


async def test_offsets_missing_from_the_log_are_counted_and_the_fold_goes_on(pool: asyncpg.Pool) -> None:
    def skipped() -> float:
        return REGISTRY.get_sample_value("jobmeter_offsets_skipped_total", {"projection": "probe"}) or 0.0

    before = skipped()
    await Folder(Probe(), pool).fold([record(0, "g-0"), record(1, "g-1")])
    assert skipped() == before
    # Offsets 2-4 never arrive (a retention set on the topic): reported, and what did arrive is applied.
    outcome = await Folder(Probe(), pool).fold([record(5, "g-5"), record(6, "g-6")])
    assert (outcome.applied, skipped() - before) == (2, 3)
    # A rebuild that starts part-way on purpose reports nothing.
    await Folder(Probe(), pool, contiguous=False).fold([record(9, "g-9")])
    assert skipped() - before == 3
    _, stored = await seen_and_positions(pool)
    assert stored == {0: 10}


class JobCompletedV2(JobCompleted):
    """What a later release might make of JobCompleted: a new field, version 2."""

    version: ClassVar[int] = 2
    priority: str = "normal"


def newer(offset: int, job_id: str, partition: int = 0, *, kind: str = "JobCompleted") -> RawRecord:
    """A record a newer producer wrote: JobCompleted v2 with its new field, or a type this reader has never seen."""
    raw = json.loads(record(offset, job_id, partition).value or b"")
    raw.update(type=kind, version=2)
    raw["data"]["priority"] = "high"
    return RawRecord("t.jobs", partition, offset, 1_700_000_000_000, b"acme", json.dumps(raw).encode())


def newer_reader() -> EventRegistry:
    registry = EventRegistry([JobCompletedV2, *(m for m in EVENTS.models() if m.event_type != "JobCompleted")])
    registry.upcaster("JobCompleted", 1)(lambda data: {**data, "priority": "normal"})
    return registry


async def test_a_record_of_a_newer_version_holds_its_partition_until_a_reader_knows_it(pool: asyncpg.Pool) -> None:
    """Never dead-lettered, never skipped: the partition stops at the record (its position stays before it) while
    the others go on; a reader that knows the version applies the held record and everything after it, once."""
    letters = Letters()
    folder = Folder(Probe(), pool, dead_letters=letters, chunk=2)
    batch = [record(0, "p0-0"), newer(1, "p0-new"), record(2, "p0-2"), newer(3, "p0-unknown", kind="JobRefunded"),
             record(0, "p1-0", partition=1), record(1, "p1-1", partition=1),
             newer(0, "p2-unknown", partition=2, kind="JobRefunded"), record(1, "p2-1", partition=2)]
    outcome = await folder.fold(batch)
    assert (outcome.applied, outcome.dead, outcome.held) == (3, 0, 5)
    assert letters == []
    assert await seen_and_positions(pool) == (["p0-0", "p1-0", "p1-1"], {0: 1, 1: 2, 2: 0})
    assert {p: (h.offset, "newer than this reader" in h.reason or "unknown event type" in h.reason)
            for (_, p), h in folder.held.items()} == {0: (1, True), 2: (0, True)}
    assert sample("jobmeter_partitions_held", projection="probe") == 2

    # Fetched again (the consumer seeks back to the held record): still held, nothing more applied or lost.
    again = await folder.fold([*batch, record(2, "p1-2", partition=1)])
    assert (again.applied, again.dead) == (1, 0)
    assert (await seen_and_positions(pool))[1] == {0: 1, 1: 3, 2: 0}

    # The upgraded reader (JobCompleted v2, and a JobRefunded it still does not know) takes over from the positions.
    upgraded = Folder(Probe(), pool, dead_letters=letters, registry=newer_reader())
    done = await upgraded.fold(batch)
    assert (done.applied, done.dead, done.held) == (2, 0, 3)
    seen, stored = await seen_and_positions(pool)
    assert seen == ["p0-0", "p0-2", "p0-new", "p1-0", "p1-1", "p1-2"]
    assert stored == {0: 3, 1: 3, 2: 0}  # partition 0 now stops at the JobRefunded, partition 2 still does
    assert letters == []


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)
