"""Replay: rebuild a projection from the event log into a shadow schema, compare it, and swap it in.

Python entry points, each opening and closing what it needs:
- `rebuild(settings, name, since=None, progress=None)`: drop, migrate and fold `<schema>__rebuild`.
- `verify(settings, name)`: the differences between the rebuild and the live tables ([] when equal).
- `swap(settings, name)`: make the rebuild live without losing what arrives meanwhile.
`replaying(settings, name)` opens one `Replay` (projections.replay.session) for several steps (the CLI runs
rebuild, verify, swap). The shadow schema's helpers are in `shadow`, the row-for-row comparison in `compare`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime

import asyncpg

from jobmeter.settings import Settings
from projections import catalog
from projections.db import create_pool
from projections.log import LogReader
from projections.replay.compare import Difference
from projections.replay.dead_letters import DeadLetterPublisher
from projections.replay.session import Progress, RebuildResult, Replay
from projections.replay.shadow import ReplayError


@asynccontextmanager
async def replaying(settings: Settings, name: str) -> AsyncIterator[Replay]:
    """One replay of `name` at a time: a second one (another operator, another host) is refused, not raced."""
    projection = catalog.get(name).configured(settings)
    url = settings.database_url_for(projection.name)  # the projection's own database, where its tables live
    guard = await asyncpg.connect(url)
    try:
        # Two-key advisory locks are a separate key space from the one-key swap lock live folds share. Keyed by
        # the projection's own name, so a replay under a former name (`usage-ledger`) is the same replay.
        if not await guard.fetchval(
            "SELECT pg_try_advisory_lock(hashtext('jobmeter.replay'), hashtext($1))", projection.name
        ):
            raise ReplayError(f"another replay of {projection.name} is running")
        async with AsyncExitStack() as stack:
            pool = await create_pool(url)
            stack.push_async_callback(pool.close)
            reader = await stack.enter_async_context(
                LogReader(settings.kafka_bootstrap_servers, max_records=settings.jobmeter_batch_max_records)
            )
            dead_letters = DeadLetterPublisher(settings)
            stack.push_async_callback(dead_letters.close)
            yield Replay(settings, projection, pool, reader, dead_letters)
    finally:
        await guard.close()  # ends the session, and the guard lock with it


async def rebuild(
    settings: Settings, name: str, *, since: datetime | None = None, progress: Progress | None = None
) -> RebuildResult:
    """Rebuild projection `name` into `<schema>__rebuild` (see `Replay.rebuild`)."""
    async with replaying(settings, name) as replay:
        return await replay.rebuild(since=since, progress=progress)


async def verify(settings: Settings, name: str, *, wait_seconds: float = 60) -> list[Difference]:
    """Differences between the existing rebuild of `name` and its live tables (see `Replay.verify`)."""
    async with replaying(settings, name) as replay:
        return await replay.verify(wait_seconds=wait_seconds)


async def swap(settings: Settings, name: str) -> str:
    """Make the existing rebuild of `name` live (see `Replay.swap`); returns the old schema's last name."""
    async with replaying(settings, name) as replay:
        return await replay.swap()
