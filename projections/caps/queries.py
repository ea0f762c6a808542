"""Reads of the caps' tables (`caps.caps`, `caps.usage`, `caps.standing`, `caps.alerts`): the one place outside
its fold that queries them. Every function takes a connection."""

from __future__ import annotations

from datetime import datetime

import asyncpg


async def caps(conn: asyncpg.Connection, account_id: str | None = None) -> list[asyncpg.Record]:
    """The caps in force (of one account, when given), with the usage and hold of the account's current period."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT c.account_id, nullif(c.scope, '') AS api, c.jobs, c.hard, c.spend_minor, c.set_at,
                  s.period_start, s.period_end, coalesce(s.held, false) AS held, s.reason AS held_reason,
                  coalesce((SELECT sum(u.jobs) FROM caps.usage AS u WHERE u.account_id = c.account_id
                            AND u.period_start = s.period_start AND (c.scope = '' OR u.api = c.scope)), 0)::bigint
                      AS used
           FROM caps.caps AS c LEFT JOIN caps.standing AS s USING (account_id)
           WHERE $1::text IS NULL OR c.account_id = $1 ORDER BY c.account_id, c.scope""",
        account_id,
    )
    return rows


async def standing(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM caps.standing WHERE account_id = $1", account_id)


async def usage(conn: asyncpg.Connection, account_id: str, period_start: datetime) -> dict[str, int]:
    rows = await conn.fetch("SELECT api, jobs FROM caps.usage WHERE account_id = $1 AND period_start = $2",
                            account_id, period_start)
    return {r["api"]: int(r["jobs"]) for r in rows}


async def held_past_period(conn: asyncpg.Connection, now: datetime) -> list[asyncpg.Record]:
    """Accounts a cap holds in a period that is over by `now`: what the cap clock ends. Unqualified: the clock
    reads the schema its consumer folds into (search_path)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT account_id, period_start, period_end FROM standing WHERE held AND period_end <= $1 "
        "ORDER BY period_end", now,
    )
    return rows


async def alerts(conn: asyncpg.Connection, account_id: str, limit: int = 100) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT period_start, alert, raised_at FROM caps.alerts WHERE account_id = $1 "
        "ORDER BY raised_at DESC, alert LIMIT $2", account_id, limit,
    )
    return rows


async def jobs_cap(conn: asyncpg.Connection, account_id: str) -> int | None:
    """The account's own cap on all its jobs (hard or soft), None when it set none."""
    found: int | None = await conn.fetchval(
        "SELECT min(jobs) FROM caps.caps WHERE account_id = $1 AND scope = '' AND jobs > 0", account_id
    )
    return found


async def first_job_at(conn: asyncpg.Connection, account_id: str) -> datetime | None:
    """When the account's first job (that the caps fold has counted) completed: the day a forecast's history
    starts for an account never registered, or used before it was. None before any."""
    found: datetime | None = await conn.fetchval(
        "SELECT min(completed_at) FROM caps.seen WHERE account_id = $1", account_id
    )
    return found
