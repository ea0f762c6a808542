"""A projection small enough to test the fold itself with, on the real Postgres: it keeps the id of each job it
applies in `probe.seen` (whose CHECK refuses ids starting with "poison", a data error on demand)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from events.envelope import Event
from events.jobs import JobCompleted
from jobmeter.settings import Settings
from projections.db import create_pool
from projections.migrate import migrate
from projections.projection import Projection
from projections.records import Recorded


class Probe(Projection):
    name = "probe"
    schema = "probe"
    topics = ("jobs",)
    migrations = Path(__file__).parent / "fold_probe"
    tables = ("seen",)

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        ids = [e.event.job_id for e in events if isinstance(e.event, JobCompleted)]
        await conn.execute("INSERT INTO seen SELECT unnest($1::text[])", ids)


@asynccontextmanager
async def probe_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The probe's schema migrated in this test's database, and a pool on it."""
    await migrate(settings.database_url, "probe", Probe.migrations)
    opened = await create_pool(settings.database_url)
    try:
        yield opened
    finally:
        await opened.close()
