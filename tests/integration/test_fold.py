"""The fold itself, on the real stack: redelivery applies nothing twice; a record the data makes fail is
dead-lettered alone while the rest of its batch is applied; unreadable bytes are dead-lettered with a reason."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from events.codec import encode
from events.deadletters import DeadLettered
from events.envelope import Envelope, Event
from events.jobs import JobCompleted
from jobmeter.settings import Settings
from projections.db import create_pool
from projections.fold import Folder
from projections.migrate import migrate
from projections.projection import Projection
from projections.records import RawRecord, Recorded

pytestmark = pytest.mark.integration


class Probe(Projection):
    name = "probe"
    schema = "probe"
    topics = ("jobs",)
    migrations = Path(__file__).parent / "fold_probe"
    tables = ("seen",)

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        ids = [e.event.job_id for e in events if isinstance(e.event, JobCompleted)]
        await conn.execute("INSERT INTO seen SELECT unnest($1::text[])", ids)


def record(offset: int, job_id: str | None, partition: int = 0) -> RawRecord:
    if job_id is None:
        value = b"{broken"
    else:
        job = JobCompleted(account_id="acme", api="extract", job_id=job_id, channel="direct", mode="sync",
                           completed_at=datetime(2026, 11, 1, tzinfo=UTC))
        value = encode(Envelope.wrap(job, producer="test"))
    return RawRecord("t.jobs", partition, offset, 1_700_000_000_000, b"acme", value)


async def test_redelivery_poison_and_garbage(settings: Settings) -> None:
    await migrate(settings.database_url, "probe", Probe.migrations)
    pool = await create_pool(settings.database_url)
    letters: list[DeadLettered] = []

    async def sink(batch: Sequence[DeadLettered]) -> None:
        letters.extend(batch)

    folder = Folder(Probe(), pool, dead_letters=sink)
    try:
        first = [record(0, "a"), record(1, "poison-1"), record(2, None), record(3, "b")]
        outcome = await folder.fold(first)
        assert (outcome.applied, outcome.skipped, outcome.dead) == (2, 0, 2)
        again = await folder.fold([*first, record(4, "c")])  # a redelivery overlapping what was applied
        assert (again.applied, again.skipped, again.dead) == (1, 4, 0)
        async with pool.acquire() as conn:
            assert sorted(r["job_id"] for r in await conn.fetch("SELECT job_id FROM probe.seen")) == ["a", "b", "c"]
            assert await conn.fetchval("SELECT next_offset FROM probe.positions") == 5
        reasons = {letter.offset: letter.reason for letter in letters}
        assert set(reasons) == {1, 2}
        assert "could not apply" in reasons[1] and "seen_job_id_check" in reasons[1]
        assert "not an event envelope" in reasons[2]
        assert letters[0].natural_id() != letters[1].natural_id()
    finally:
        await pool.close()
