"""Schema migrations, with yoyo-migrations: plain SQL files, applied once each, under a lock.

A projection's migrations are applied to a named schema (its live one, or a shadow one for replay), so
the same files build both; yoyo keeps its bookkeeping inside that schema, which makes them independent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from yoyo import get_backend, read_migrations

from projections.db import quote_schema

TRACKING_MIGRATIONS = Path(__file__).parent / "tracking"


def yoyo_url(dsn: str, schema: str) -> str:
    """yoyo speaks psycopg 3 through the `postgresql+psycopg` scheme and takes the schema as a parameter."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    query["schema"] = schema
    return urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, urlencode(query), parts.fragment))


async def migrate(dsn: str, schema: str, *migration_dirs: Path) -> None:
    """Bring `schema` up to date with the tracking tables and the given migration folders."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_schema(schema)}")
    except asyncpg.UniqueViolationError:
        pass  # IF NOT EXISTS is not atomic: a process starting beside this one created it a moment ago
    finally:
        await conn.close()
    await asyncio.to_thread(_apply, yoyo_url(dsn, schema), schema, [TRACKING_MIGRATIONS, *migration_dirs])


def _apply(url: str, schema: str, dirs: list[Path]) -> None:
    backend = get_backend(url)
    key = {"key": f"jobmeter-migrate:{schema}"}
    try:
        # yoyo's own lock is a committed row: a process killed while holding it would leave it behind and
        # every later start would time out. A session advisory lock dies with its connection, so whoever holds
        # it knows any lock row it finds is stale and may break it.
        backend.execute("SELECT pg_advisory_lock(hashtext(:key))", key)
        backend.create_lock_table()
        backend.break_lock()
        migrations = read_migrations(*(str(d) for d in dirs))
        with backend.lock():
            backend.apply_migrations(backend.to_apply(migrations))
    finally:
        backend.connection.close()
