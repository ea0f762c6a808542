"""RapidAPI's own ledger of its channel's jobs, on the real Postgres: each job once, in the UTC month `month_of` names,
whatever offset its completion was written with and however near a month's edge (hypothesis)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from events.envelope import Envelope, Event
from events.jobs import JobCompleted
from jobmeter.settings import Settings
from projections.db import create_pool, transaction
from projections.migrate import migrate
from projections.rapidapi.projection import RapidApiChannel, month_of
from projections.records import Recorded

pytestmark = pytest.mark.integration

EDGES = [datetime(2026, month, 1, tzinfo=UTC) for month in range(1, 13)] + [datetime(2027, 1, 1, tzinfo=UTC)]

moments = st.builds(
    lambda edge, seconds, offset: (edge + timedelta(seconds=seconds)).astimezone(timezone(timedelta(minutes=offset))),
    st.sampled_from(EDGES), st.integers(-2 * 86_400, 2 * 86_400), st.integers(-14 * 60, 14 * 60),
)
jobs = st.lists(st.tuples(st.sampled_from(["extract", "ocr"]), st.integers(0, 8), moments,
                          st.sampled_from(["rapidapi", "direct"])), max_size=30)


def recorded(api: str, n: int, at: datetime, channel: str) -> Recorded[Event]:
    job = JobCompleted(account_id="ra-1", api=api, job_id=f"j{n}", channel=channel, mode="sync", completed_at=at)
    return Recorded("t.jobs", 0, 0, datetime(2027, 2, 1, tzinfo=UTC), Envelope.wrap(job, producer="t"), job)


async def example(url: str, batches: list[list[tuple[str, int, datetime, str]]]) -> None:
    schema = f"rapidapi_{uuid.uuid4().hex[:8]}"
    await migrate(url, schema, RapidApiChannel.migrations)
    pool = await create_pool(url)
    try:
        for batch in batches:
            async with transaction(pool, schema) as conn:
                await RapidApiChannel().apply(conn, [recorded(*job) for job in batch])
        async with transaction(pool, schema) as conn:
            rows = {(r["api"], r["job_id"]): (r["completed_at"], r["period"])
                    for r in await conn.fetch("SELECT * FROM ledger_jobs")}
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await pool.close()
    first: dict[tuple[str, str], datetime] = {}
    for api, n, at, channel in (job for batch in batches for job in batch):
        if channel == "rapidapi":
            first.setdefault((api, f"j{n}"), at)
    assert rows == {key: (at, month_of(at)) for key, at in first.items()}


async def test_each_job_once_in_its_utc_month(settings: Settings) -> None:
    loop = asyncio.get_running_loop()

    @given(st.lists(jobs, min_size=1, max_size=3))
    @hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(batches: list[list[tuple[str, int, datetime, str]]]) -> None:
        asyncio.run_coroutine_threadsafe(example(settings.database_url, batches), loop).result(timeout=60)

    await asyncio.to_thread(check)
