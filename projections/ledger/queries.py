"""Reading the ledger: totals and groups over hours, days and months, and jobs that arrived late."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

# Group keys a caller may ask for, and the SQL each one is. Only these names ever reach the SQL text.
GROUPS: dict[str, str] = {
    "account": "account_id",
    "api": "api",
    "channel": "channel",
    "hour": "hour",
    "day": "date_trunc('day', hour, 'UTC')",
    "month": "date_trunc('month', hour, 'UTC')",
}


class BadQuery(ValueError):
    """A question the ledger cannot answer as asked; the message says why."""


def parse_group_by(value: str | None) -> list[str]:
    names = [part.strip() for part in (value or "").split(",") if part.strip()]
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise BadQuery(f"cannot group by {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    return list(dict.fromkeys(names))


def check_window(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise BadQuery("from and to need a time zone (e.g. 2026-11-01T00:00:00Z)")
    if end <= start:
        raise BadQuery("to must be after from")
    for name, value in (("from", start), ("to", end)):
        if value.minute or value.second or value.microsecond:
            raise BadQuery(f"{name} must fall on a whole hour: the ledger counts per hour")


@dataclass(frozen=True)
class Usage:
    account_id: str | None
    start: datetime
    end: datetime
    total: int
    groups: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "total": self.total,
            "groups": [{k: _plain(v) for k, v in g.items()} for g in self.groups],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date().isoformat() if value.hour == 0 and value.minute == 0 else value.isoformat()
    return value


async def usage(
    conn: asyncpg.Connection, account_id: str | None, start: datetime, end: datetime, group_by: list[str]
) -> Usage:
    """Jobs of one account (or all) completed in [start, end), summed over the requested groups."""
    check_window(start, end)
    where = "hour >= $1 AND hour < $2" + (" AND account_id = $3" if account_id else "")
    args: list[Any] = [start, end] + ([account_id] if account_id else [])
    total = await conn.fetchval(f"SELECT coalesce(sum(jobs), 0) FROM ledger.hourly WHERE {where}", *args)  # noqa: S608
    groups: list[dict[str, Any]] = []
    if group_by:
        columns = ", ".join(f"{GROUPS[g]} AS {g}" for g in group_by)
        keys = ", ".join(str(i + 1) for i in range(len(group_by)))
        rows = await conn.fetch(
            f"SELECT {columns}, sum(jobs)::bigint AS jobs FROM ledger.hourly WHERE {where} "  # noqa: S608
            f"GROUP BY {keys} ORDER BY {keys}",
            *args,
        )
        groups = [dict(r) for r in rows]
    return Usage(account_id, start, end, int(total), groups)


async def late_jobs(conn: asyncpg.Connection, start: datetime, end: datetime, after: datetime) -> list[dict[str, Any]]:
    """Jobs completed in [start, end) that reached the log after `after`: what changed once it was reported."""
    rows = await conn.fetch(
        """SELECT account_id, api, channel, count(*)::bigint AS jobs, min(logged_at) AS first_logged,
                  max(logged_at) AS last_logged
           FROM ledger.jobs WHERE completed_at >= $1 AND completed_at < $2 AND logged_at > $3
           GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
        start, end, after,
    )
    return [dict(r) for r in rows]


# What the console shows


async def daily_jobs(conn: asyncpg.Connection, account_id: str, since: datetime) -> list[asyncpg.Record]:
    """The account's jobs per UTC day and API surface (day, api, jobs), from the hour `since` on."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT (date_trunc('day', hour, 'UTC') AT TIME ZONE 'UTC')::date AS day, api, sum(jobs)::bigint AS jobs
           FROM ledger.hourly WHERE account_id = $1 AND hour >= $2 GROUP BY 1, 2""",
        account_id, since,
    )
    return rows


async def total_jobs(conn: asyncpg.Connection) -> int:
    """Every job the ledger has counted, all accounts and hours."""
    return int(await conn.fetchval("SELECT coalesce(sum(jobs), 0)::bigint FROM ledger.hourly"))


async def job_count(conn: asyncpg.Connection, logged_after: datetime | None = None) -> int:
    """Distinct jobs in the ledger (those that reached the log after `logged_after`, when given)."""
    return int(await conn.fetchval(
        "SELECT count(*)::bigint FROM ledger.jobs WHERE $1::timestamptz IS NULL OR logged_at > $1", logged_after
    ))


# What the developer tools read (the demo's report, the chaos run's invariants)


async def jobs_by_api_and_channel(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every job counted, per API surface and channel (api, channel, jobs), in that order."""
    rows = await conn.fetch(
        "SELECT api, channel, sum(jobs)::bigint AS jobs FROM ledger.hourly GROUP BY 1, 2 ORDER BY 1, 2"
    )
    return [dict(r) for r in rows]


async def direct_jobs(conn: asyncpg.Connection, account_ids: list[str]) -> dict[str, dict[str, int]]:
    """Jobs these accounts ran on the direct channel, per account and API surface."""
    rows = await conn.fetch(
        """SELECT account_id, api, sum(jobs)::bigint AS jobs FROM ledger.hourly
           WHERE channel = 'direct' AND account_id = ANY($1) GROUP BY 1, 2""",
        account_ids,
    )
    jobs: dict[str, dict[str, int]] = {}
    for r in rows:
        jobs.setdefault(r["account_id"], {})[r["api"]] = int(r["jobs"])
    return jobs


async def jobs_per_channel(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[asyncpg.Record]:
    """Jobs completed in [start, end), per account and channel (rows of account_id, channel, jobs)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT account_id, channel, sum(jobs)::bigint AS jobs FROM ledger.hourly
           WHERE hour >= $1 AND hour < $2 GROUP BY 1, 2""",
        start, end,
    )
    return rows


async def busiest_accounts(conn: asyncpg.Connection, since: datetime, limit: int) -> list[asyncpg.Record]:
    """The accounts with the most jobs from the hour `since` on: (account_id, jobs), most first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT account_id, sum(jobs)::bigint AS jobs FROM ledger.hourly WHERE hour >= $1
           GROUP BY account_id ORDER BY jobs DESC, account_id LIMIT $2""",
        since, limit,
    )
    return rows
