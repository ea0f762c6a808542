"""Comparing a live table with its rebuild, row for row, inside the caller's snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from projections.db import quote_schema
from projections.replay.shadow import ReplayError

SAMPLE_ROWS = 5


@dataclass(frozen=True)
class Difference:
    """One table (or the positions) that differs between the live projection and the rebuild."""

    table: str
    live_rows: int = 0
    rebuild_rows: int = 0
    only_live: int = 0
    only_rebuild: int = 0
    live_sample: list[dict[str, Any]] = field(default_factory=list)
    rebuild_sample: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


async def compare(conn: asyncpg.Connection, live_schema: str, shadow_schema: str, table: str) -> Difference | None:
    """How `table` differs between the two schemas (counts, and a few rows from each side); None when equal."""
    live = f"{quote_schema(live_schema)}.{_ident(table)}"
    shadow = f"{quote_schema(shadow_schema)}.{_ident(table)}"
    live_cols, shadow_cols = await _columns(conn, live_schema, table), await _columns(conn, shadow_schema, table)
    if live_cols != shadow_cols:
        return Difference(table, note=f"columns differ: live {live_cols}, rebuild {shadow_cols}")
    cols = ", ".join(_ident(c) for c in shadow_cols)
    live_rows = await conn.fetchval(f"SELECT count(*) FROM {live}")  # noqa: S608
    rebuild_rows = await conn.fetchval(f"SELECT count(*) FROM {shadow}")  # noqa: S608
    # EXCEPT ALL compares multisets: a row twice on one side and once on the other is a difference.
    only_live = f"SELECT {cols} FROM {live} EXCEPT ALL SELECT {cols} FROM {shadow}"  # noqa: S608
    only_rebuild = f"SELECT {cols} FROM {shadow} EXCEPT ALL SELECT {cols} FROM {live}"  # noqa: S608
    n_live = await conn.fetchval(f"SELECT count(*) FROM ({only_live}) d")  # noqa: S608
    n_rebuild = await conn.fetchval(f"SELECT count(*) FROM ({only_rebuild}) d")  # noqa: S608
    if not n_live and not n_rebuild:
        return None
    return Difference(
        table, live_rows, rebuild_rows, n_live, n_rebuild,
        await _sample(conn, only_live, cols), await _sample(conn, only_rebuild, cols),
    )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _sample(conn: asyncpg.Connection, rows: str, order_by: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(f"SELECT * FROM ({rows}) d ORDER BY {order_by} LIMIT {SAMPLE_ROWS}")]  # noqa: S608


async def _columns(conn: asyncpg.Connection, schema: str, table: str) -> list[str]:
    rows = await conn.fetch(
        """SELECT column_name FROM information_schema.columns
           WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position""",
        schema, table,
    )
    if not rows:
        raise ReplayError(f"table {schema}.{table} does not exist")
    return [r["column_name"] for r in rows]
