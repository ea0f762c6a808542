"""The receipts statements against the real Postgres: receipts are found by (api, job_id), and a receipt a racing
copy claimed first is counted as that copy's, not written twice."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from events.jobs import JobCompleted
from jobmeter.settings import Settings
from services.engine.stores import STORES
from services.ledger import store
from services.platform.resources import prepare

pytestmark = pytest.mark.integration


def jobs(*keys: tuple[str, str, str]) -> list[JobCompleted]:
    return [JobCompleted(account_id=account, api=api, job_id=job_id, channel="direct", mode="sync",
                         completed_at=datetime(2026, 12, 1, tzinfo=UTC)) for account, api, job_id in keys]


async def connect(settings: Settings) -> asyncpg.Connection:
    await prepare(settings, STORES)
    return await asyncpg.connect(settings.database_url)


async def test_receipts_are_found_by_api_and_job_id(settings: Settings) -> None:
    conn = await connect(settings)
    try:
        assert await store.record(conn, store.Receipts.of(jobs(("acme", "extract", "j-1"),
                                                               ("stranger", "classify", "j-2")))) == 2
        batch = jobs(("acme", "extract", "j-1"), ("acme", "classify", "j-1"), ("stranger", "classify", "j-2"),
                     ("stranger", "extract", "j-3"))
        assert await store.received(conn, store.Receipts.of(batch)) == {("extract", "j-1"), ("classify", "j-2")}
    finally:
        await conn.close()


async def test_receipts_a_racing_copy_claimed_first_are_not_counted_again(settings: Settings) -> None:
    conn = await connect(settings)
    try:
        first = store.Receipts.of(jobs(("acme", "extract", "a"), ("acme", "extract", "b")))
        assert await store.record(conn, first) == 2
        # read as new by both copies, claimed by the other first: the plain INSERT fails whole, nothing half-written
        assert await store.record(conn, first) == 0
        overlapping = store.Receipts.of(jobs(("acme", "extract", "b"), ("acme", "extract", "c"),
                                             ("acme", "classify", "a")))
        assert await store.record(conn, overlapping) == 2
        rows = await conn.fetch("SELECT api, job_id FROM ingest.receipts ORDER BY api, job_id")
        assert [(r["api"], r["job_id"]) for r in rows] == [
            ("classify", "a"), ("extract", "a"), ("extract", "b"), ("extract", "c")]
    finally:
        await conn.close()
