"""Writes (and the fold's own reads) of the caps' tables: only its fold calls them, on its own schema."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg

from events.jobs import JobCompleted
from projections.caps.rules import Cap, Grid, period_of


class NewJob(NamedTuple):
    account_id: str
    api: str
    completed_at: datetime


class Standing(NamedTuple):
    latest_at: datetime
    period_start: datetime
    period_end: datetime
    held: bool
    reason: str | None
    decisions: int


async def count_new(conn: asyncpg.Connection, jobs: Sequence[JobCompleted]) -> list[NewJob]:
    """The jobs not counted before (by api and job id), now marked counted."""
    if not jobs:
        return []
    rows = await conn.fetch(
        """INSERT INTO seen (api, job_id, account_id, completed_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
           ON CONFLICT DO NOTHING RETURNING account_id, api, completed_at""",
        [j.api for j in jobs], [j.job_id for j in jobs], [j.account_id for j in jobs], [j.completed_at for j in jobs],
    )
    return [NewJob(r["account_id"], r["api"], r["completed_at"]) for r in rows]


async def add_usage(conn: asyncpg.Connection, counts: Mapping[tuple[str, datetime, str], int]) -> None:
    if not counts:
        return
    keys = sorted(counts)  # one order for every fold: no two deadlock on the same rows
    await conn.execute(
        """INSERT INTO usage (account_id, period_start, api, jobs)
           SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bigint[])
           ON CONFLICT (account_id, period_start, api) DO UPDATE SET jobs = usage.jobs + EXCLUDED.jobs""",
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [counts[k] for k in keys],
    )


async def set_cap(conn: asyncpg.Connection, account_id: str, cap: Cap, set_at: datetime) -> None:
    await conn.execute(
        """INSERT INTO caps (account_id, scope, jobs, hard, spend_minor, set_at) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (account_id, scope) DO UPDATE SET jobs = EXCLUDED.jobs, hard = EXCLUDED.hard,
               spend_minor = EXCLUDED.spend_minor, set_at = EXCLUDED.set_at""",
        account_id, cap.scope, cap.jobs, cap.hard, cap.spend_minor, set_at,
    )


async def clear_cap(conn: asyncpg.Connection, account_id: str, scope: str) -> None:
    await conn.execute("DELETE FROM caps WHERE account_id = $1 AND scope = $2", account_id, scope)


async def caps_of(conn: asyncpg.Connection, accounts: Sequence[str]) -> dict[str, list[Cap]]:
    found: dict[str, list[Cap]] = {}
    for r in await conn.fetch("SELECT * FROM caps WHERE account_id = ANY($1) ORDER BY scope", list(accounts)):
        found.setdefault(r["account_id"], []).append(Cap(r["scope"], r["jobs"], r["hard"], r["spend_minor"]))
    return found


async def standings(conn: asyncpg.Connection, accounts: Sequence[str]) -> dict[str, Standing]:
    rows = await conn.fetch(
        "SELECT * FROM standing WHERE account_id = ANY($1) FOR UPDATE", sorted(accounts)
    )
    return {r["account_id"]: Standing(r["latest_at"], r["period_start"], r["period_end"], r["held"], r["reason"],
                                      r["decisions"])
            for r in rows}


async def usage_in(conn: asyncpg.Connection, periods: Mapping[str, datetime]) -> dict[str, dict[str, int]]:
    """Jobs per API surface of each account in the period starting at the given time."""
    rows = await conn.fetch(
        """SELECT u.account_id, u.api, u.jobs FROM usage AS u
           JOIN unnest($1::text[], $2::timestamptz[]) AS p(account_id, period_start)
           USING (account_id, period_start)""",
        list(periods), list(periods.values()),
    )
    found: dict[str, dict[str, int]] = {}
    for r in rows:
        found.setdefault(r["account_id"], {})[r["api"]] = int(r["jobs"])
    return found


async def save_standing(conn: asyncpg.Connection, account_id: str, s: Standing) -> None:
    await conn.execute(
        """INSERT INTO standing (account_id, latest_at, period_start, period_end, held, reason, decisions)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (account_id) DO UPDATE SET latest_at = EXCLUDED.latest_at,
               period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end, held = EXCLUDED.held,
               reason = EXCLUDED.reason, decisions = EXCLUDED.decisions""",
        account_id, s.latest_at, s.period_start, s.period_end, s.held, s.reason, s.decisions,
    )


async def raise_alerts(conn: asyncpg.Connection, account_id: str, period_start: datetime, alerts: Sequence[str],
                       at: datetime) -> set[str]:
    """Record the alerts; returns those not raised before in this period."""
    if not alerts:
        return set()
    rows = await conn.fetch(
        """INSERT INTO alerts (account_id, period_start, alert, raised_at)
           SELECT $1, $2, a, $4 FROM unnest($3::text[]) AS a ON CONFLICT DO NOTHING RETURNING alert""",
        account_id, period_start, list(alerts), at,
    )
    return {r["alert"] for r in rows}


async def save_grid(conn: asyncpg.Connection, customer_id: str, grid: Grid | None, created: datetime,
                    base_price_id: str | None = None) -> bool:
    """Keep the customer's period grid (and its plan's base price) from its latest subscription event; True when
    the grid it keeps changed."""
    before = await conn.fetchrow("SELECT * FROM grids WHERE customer_id = $1 FOR UPDATE", customer_id)
    if before is not None and before["created"] > created:
        return False  # an older event, delivered late
    await conn.execute(
        """INSERT INTO grids (customer_id, anchor, months, period_start, period_end, created, base_price_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (customer_id) DO UPDATE SET anchor = EXCLUDED.anchor, months = EXCLUDED.months,
               period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end, created = EXCLUDED.created,
               base_price_id = EXCLUDED.base_price_id""",
        customer_id, grid.anchor if grid else None, grid.months if grid else None, grid.start if grid else None,
        grid.end if grid else None, created, base_price_id if grid else None,
    )
    return as_grid(before) != grid if before is not None else grid is not None


def as_grid(row: asyncpg.Record) -> Grid | None:
    if row["anchor"] is None:
        return None
    return Grid(row["anchor"], row["months"], row["period_start"], row["period_end"])


async def accounts_of_customers(conn: asyncpg.Connection, customers: Sequence[str]) -> list[str]:
    rows = await conn.fetch("SELECT account_id FROM accounts WHERE customer_id = ANY($1)", list(customers))
    return [r["account_id"] for r in rows]


async def grids_of(conn: asyncpg.Connection, accounts: Sequence[str]) -> dict[str, Grid]:
    """The period grid of each account billed by a live subscription (the others use the calendar month)."""
    rows = await conn.fetch(
        """SELECT a.account_id, g.* FROM accounts AS a JOIN grids AS g USING (customer_id)
           WHERE a.account_id = ANY($1) AND g.anchor IS NOT NULL""",
        list(accounts),
    )
    return {r["account_id"]: grid for r in rows if (grid := as_grid(r)) is not None}


async def plans_of(conn: asyncpg.Connection, accounts: Sequence[str]) -> dict[str, str]:
    """The base price of each account's live subscription: what its period includes."""
    rows = await conn.fetch(
        """SELECT a.account_id, g.base_price_id FROM accounts AS a JOIN grids AS g USING (customer_id)
           WHERE a.account_id = ANY($1) AND g.anchor IS NOT NULL AND g.base_price_id IS NOT NULL""",
        list(accounts),
    )
    return {r["account_id"]: r["base_price_id"] for r in rows}


async def recount(conn: asyncpg.Connection, account_id: str, grid: Grid | None) -> None:
    """Count the account's jobs again onto its (new) period grid: once per change of its subscription's grid."""
    await conn.execute("DELETE FROM usage WHERE account_id = $1", account_id)
    counts: Counter[tuple[str, datetime, str]] = Counter()
    async for r in conn.cursor("SELECT api, completed_at FROM seen WHERE account_id = $1", account_id):
        counts[(account_id, period_of(r["completed_at"], grid).start, r["api"])] += 1
    await add_usage(conn, counts)
