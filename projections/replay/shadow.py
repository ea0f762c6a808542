"""The rebuild's shadow schema: its name, the marker that says how it was built, and reading positions.

A rebuild lives in `<schema>__rebuild`. Its schema comment records whether it was folded from offset zero
(FULL) or only from a time (PARTIAL): only a full one may be verified or swapped.
"""

from __future__ import annotations

import asyncpg

from projections.db import quote_schema
from projections.log import LogError, Offsets
from projections.projection import Projection

REBUILD_SUFFIX = "__rebuild"
FULL = "jobmeter replay: full, from offset zero"
PARTIAL = "jobmeter replay: partial, since "


class ReplayError(LogError):
    """The replay cannot go on; the message says why and what to do."""


def shadow_schema(projection: Projection) -> str:
    return f"{projection.schema}{REBUILD_SUFFIX}"


async def read_positions(conn: asyncpg.Connection, schema: str) -> Offsets:
    rows = await conn.fetch(f"SELECT topic, partition, next_offset FROM {quote_schema(schema)}.positions")  # noqa: S608
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def schema_comment(conn: asyncpg.Connection, schema: str) -> str | None:
    """The schema's comment ('' when it has none), or None when the schema does not exist."""
    row = await conn.fetchrow(
        "SELECT coalesce(obj_description(oid, 'pg_namespace'), '') AS c FROM pg_namespace WHERE nspname = $1",
        schema,
    )
    return None if row is None else str(row["c"])


async def mark(conn: asyncpg.Connection, schema: str, marker: str) -> None:
    """Record how the shadow was built (FULL, or PARTIAL with its time) as the schema's comment."""
    await conn.execute(f"COMMENT ON SCHEMA {quote_schema(schema)} IS {_literal(marker)}")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
