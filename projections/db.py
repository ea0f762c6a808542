"""The one way to reach Postgres: a pool, a transaction scoped to a projection's schema, and for a read that
spans several projections (each may live in its own database) a connection per database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_schema(schema: str) -> str:
    """Schemas are our own names, never user input; still, refuse anything that is not a plain identifier."""
    if not _SCHEMA.match(schema):
        raise ValueError(f"not a valid schema name: {schema!r}")
    return f'"{schema}"'


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing to send. asyncpg's default sends `SELECT pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL` on every release, a round trip that was a tenth to a sixth of the folds'
    socket writes. Safe because a pooled connection keeps no session state outside a transaction: the schema is
    `SET LOCAL` (`transaction`), advisory locks are `pg_advisory_xact_lock*`, cursors live in transactions, and
    nothing LISTENs or creates temporary tables (the replay's and the migrations' session locks are taken on
    connections of their own; `bench ledger`'s naive fold RESETs the search_path it SETs). asyncpg itself still
    rolls back a transaction left open and drops listeners before calling this. `tests/unit/test_pool_session.py`
    fails if code starts leaving session state on a pooled connection, and
    `tests/integration/test_pool_session.py` if a release sends a reset again."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 8) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, command_timeout=60, reset=keep_session
    )
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


# A connection to the database where a projection (named by its consumer name) lives.
Connect = Callable[[str], Awaitable[asyncpg.Connection]]


def connector(db: Connect | asyncpg.Connection) -> Connect:
    """`db` as a Connect; a plain connection stands for a deployment with every projection in one database."""
    if isinstance(db, asyncpg.Connection):
        conn = db

        async def one(_: str) -> asyncpg.Connection:
            return conn

        return one
    return db


class Connections:
    """For one read over several projections' tables: `await db("keys")` is a connection to the database where that
    projection lives (`pool_for`), taken on first use and shared by every projection living in the same database.
    No statement may join two projections' tables: each may be in another database."""

    def __init__(
        self, pool_for: Callable[[str], asyncpg.Pool], stack: AsyncExitStack, timeout: float | None = None
    ) -> None:
        self._pool_for = pool_for
        self._stack = stack
        self._timeout = timeout
        self._taken: dict[int, asyncpg.Connection] = {}

    async def __call__(self, projection: str) -> asyncpg.Connection:
        return await self.on(self._pool_for(projection))

    def share(self, pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
        """Use `conn`, already taken from `pool` (say, in a transaction), for what lives in `pool`'s database: a
        second connection from the same pool while holding one could wait for ever on a busy pool."""
        self._taken.setdefault(id(pool), conn)

    async def on(self, pool: asyncpg.Pool) -> asyncpg.Connection:
        """A connection of `pool` (a store's, not a projection's), shared as the projections' are."""
        if id(pool) not in self._taken:
            self._taken[id(pool)] = await self._stack.enter_async_context(pool.acquire(timeout=self._timeout))
        return self._taken[id(pool)]


@asynccontextmanager
async def connections(
    pool_for: Callable[[str], asyncpg.Pool], timeout: float | None = None
) -> AsyncIterator[Connections]:
    """Connections for one read, released together when it ends; each waits `timeout` seconds at most for a pool."""
    async with AsyncExitStack() as stack:
        yield Connections(pool_for, stack, timeout)
