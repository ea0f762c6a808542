"""The pool sends nothing on release (`projections.db.keep_session`): no reset query, because a pooled connection
keeps no session state outside a transaction. Both halves on the real Postgres: what a release sends, as the server
saw it, and that what a fold's transaction sets (its schema, its advisory locks) has ended by the next acquire."""

from __future__ import annotations

import asyncpg
import pytest

from jobmeter.settings import Settings
from projections.db import create_pool, transaction

pytestmark = pytest.mark.integration


async def last_statement(settings: Settings, pid: int) -> str:
    """What the server last ran for backend `pid`, from another session."""
    watcher = await asyncpg.connect(settings.database_url)
    try:
        return str(await watcher.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid))
    finally:
        await watcher.close()


async def test_a_release_sends_no_reset_query(settings: Settings) -> None:
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        async with transaction(pool, "public") as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("SELECT 1")
        # asyncpg's default reset would have been the last statement: `… UNLISTEN *; RESET ALL;`
        last = await last_statement(settings, pid)
        assert "RESET" not in last and "UNLISTEN" not in last, last
        assert last.strip().rstrip(";").upper() == "COMMIT", last
    finally:
        await pool.close()


async def test_what_a_fold_sets_ends_with_its_transaction(settings: Settings) -> None:
    pool = await create_pool(settings.database_url, max_size=1)  # one connection: the next acquire is the same one
    try:
        async with pool.acquire() as conn:
            default_path = await conn.fetchval("SHOW search_path")
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        async with transaction(pool, "payg") as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid
            assert await conn.fetchval("SHOW search_path") != default_path  # the fold's schema, for now
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('pool-session-probe'))")
            await conn.execute("SELECT pg_advisory_xact_lock_shared(hashtext('pool-session-probe-shared'))")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid
            assert await conn.fetchval("SHOW search_path") == default_path
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'"
            )
            assert held == 0
    finally:
        await pool.close()
