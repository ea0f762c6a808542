"""The one way to reach Postgres: a pool, and a transaction scoped to a projection's schema."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import asyncpg

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_schema(schema: str) -> str:
    """Schemas are our own names, never user input; still, refuse anything that is not a plain identifier."""
    if not _SCHEMA.match(schema):
        raise ValueError(f"not a valid schema name: {schema!r}")
    return f'"{schema}"'


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 8) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, command_timeout=60)
    assert pool is not None
    return pool


@asynccontextmanager
async def transaction(pool: asyncpg.Pool, schema: str | None = None) -> AsyncIterator[asyncpg.Connection]:
    """One transaction, committed once, on tables resolved in `schema` (SET LOCAL ends with it)."""
    async with pool.acquire() as conn, conn.transaction():
        if schema is not None:
            await conn.execute(f"SET LOCAL search_path TO {quote_schema(schema)}, public")
        yield conn


async def has_table(conn: asyncpg.Connection, qualified: str) -> bool:
    """Whether `schema.table` exists here: a deployment (or a test database) may run without some areas."""
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", qualified))


async def ping(pool: asyncpg.Pool, timeout: float) -> None:
    """Return once Postgres answers a query, or raise why it did not within `timeout` seconds."""
    async with pool.acquire(timeout=timeout) as conn:
        await conn.fetchval("SELECT 1")


async def lock_each(conn: asyncpg.Connection, prefix: str, keys: Iterable[str]) -> None:
    """Hold an advisory lock on `prefix + key` for each key until the transaction ends, so that two folds touching
    the same key go one after the other. Taken in one order (sorted), so two callers never deadlock."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1 || k)) FROM unnest($2::text[]) k ORDER BY k", prefix,
        sorted(set(keys)),
    )
