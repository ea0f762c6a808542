"""Jobs inserted plainly first, on the real Postgres (projections.first_seen): a fold's first try inserts without ON
CONFLICT, a copy of a job already folded rolls that try back whole, and the batch is folded again skipping copies,
each job counted once, nothing dead-lettered; the fold then expects copies for a while."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import asyncpg
import pytest

from events.codec import encode
from events.deadletters import DeadLettered
from events.envelope import Envelope, Event
from events.jobs import JobCompleted
from jobmeter.settings import Settings
from projections.db import create_pool, transaction
from projections.first_seen import unchecked
from projections.fold import Folder
from projections.ledger.projection import APPLY_JOBS, UsageLedger, job_rows
from projections.migrate import migrate
from projections.records import RawRecord, Recorded, logged_at

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def job(job_id: str) -> JobCompleted:
    return JobCompleted(account_id="acme", api="extract", job_id=job_id, channel="direct", mode="sync",
                        completed_at=AT)


def records(start: int, job_ids: Sequence[str]) -> list[RawRecord]:
    return [RawRecord("t.jobs", 0, start + n, 1_700_000_000_000, b"acme", encode(Envelope.wrap(job(j), producer="t")))
            for n, j in enumerate(job_ids)]


class Letters(list[DeadLettered]):
    async def __call__(self, batch: Sequence[DeadLettered]) -> None:
        self.extend(batch)


@pytest.fixture
async def ledger(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    schema = f"ledger_{uuid.uuid4().hex[:8]}"
    await migrate(settings.database_url, schema, UsageLedger.migrations)
    pool = await create_pool(settings.database_url)
    try:
        yield pool, schema
    finally:
        await pool.close()


async def counted(pool: asyncpg.Pool, schema: str) -> tuple[list[str], int, int]:
    async with transaction(pool, schema) as conn:
        ids = [r["job_id"] for r in await conn.fetch("SELECT job_id FROM jobs ORDER BY job_id")]
        hourly = await conn.fetchval("SELECT coalesce(sum(jobs), 0) FROM hourly")
        position = await conn.fetchval("SELECT next_offset FROM positions WHERE topic = 't.jobs' AND partition = 0")
    return ids, hourly, position


async def test_a_copy_rolls_the_plain_try_back_and_the_batch_counts_each_job_once(
    ledger: tuple[asyncpg.Pool, str],
) -> None:
    pool, schema = ledger
    letters = Letters()
    folder = Folder(UsageLedger(), pool, schema=schema, dead_letters=letters, chunk=2)  # several applies a batch

    first = await folder.fold(records(0, ["a", "b", "c"]))
    assert (first.applied, first.dead) == (3, 0)
    assert not folder.copies.expected()  # no copy yet: the next batch goes in plainly again

    # "b" again, in the batch's second chunk, and "d" twice within one chunk: the plain try fails on the copy.
    second = await folder.fold(records(3, ["e", "f", "b", "d", "d"]))
    assert (second.applied, second.skipped, second.dead) == (5, 0, 0)
    assert await counted(pool, schema) == (["a", "b", "c", "d", "e", "f"], 6, 8)
    assert folder.copies.expected()
    assert letters == []

    third = await folder.fold(records(8, ["c", "g"]))  # while copies are expected: skipped on the first try
    assert (third.applied, third.dead) == (2, 0)
    assert await counted(pool, schema) == (["a", "b", "c", "d", "e", "f", "g"], 7, 10)


async def test_the_plain_form_fails_on_a_copy_and_the_checked_form_skips_it(ledger: tuple[asyncpg.Pool, str]) -> None:
    """What the fold's fallback relies on: unchecked, the statement really has no ON CONFLICT."""
    pool, schema = ledger
    raw = records(0, ["x"])[0]
    item: Recorded[Event] = Recorded(raw.topic, raw.partition, raw.offset, logged_at(raw.timestamp),
                                     Envelope.wrap(job("x"), producer="t"), job("x"))
    async with transaction(pool, schema) as conn:
        await conn.execute(APPLY_JOBS.sql, *job_rows([item]))
        await conn.execute(APPLY_JOBS.sql, *job_rows([item]))  # checked: the copy is skipped
        assert await conn.fetchval("SELECT sum(jobs) FROM hourly") == 1
        with unchecked(), pytest.raises(asyncpg.UniqueViolationError):
            async with conn.transaction():
                await conn.execute(APPLY_JOBS.sql, *job_rows([item]))
