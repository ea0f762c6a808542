"""Writes (and the fold's own reads) of the caps' tables: only its fold calls them, on its own schema."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg

from projections.caps.rules import Cap, Grid, period_of
from projections.columns import micros
from projections.first_seen import copies_expected


class Standing(NamedTuple):
    latest_at: datetime
    period_start: datetime
    period_end: datetime
    held: bool
    reason: str | None
    decisions: int


class Jobs(NamedTuple):
    """A batch's jobs as columns, in log order: the job's key (api, job_id), account, completion, and the start of
    the period it counts in (None: not counted here, its account is recounted whole)."""

    apis: list[str]
    ids: list[str]
    accounts: list[str]
    times: list[datetime]
    periods: list[datetime | None]


# Where no copy is expected (projections.first_seen): every job of the batch is new, so its counts and latest times
# are made here and only the jobs go to `seen`, plainly — a copy fails the statement. That spares Postgres the
# batch's CTE, the join back to it and the grouping of `count_new`'s statement: 4.1–4.2 against 5.9–6.2 µs of its
# CPU a job (400,000 jobs in 20,000-job chunks, with `add_usage`).
INSERT_SEEN = """INSERT INTO seen (api, job_id, account_id, completed_at)
SELECT api, job_id, account_id, timestamptz 'epoch' + us * interval '1 microsecond'
FROM unnest(string_to_array($1, ' '), string_to_array($2, ' '), string_to_array($3, ' '),
            string_to_array($4, ' ')::int8[]) AS b(api, job_id, account_id, us)"""


async def count_new(conn: asyncpg.Connection, jobs: Jobs) -> dict[str, datetime]:
    """Mark the jobs not counted before (by api and job id) counted, and add them to their periods' usage in the
    same statement (unchecked, `count_all`); returns the latest completion of the new jobs per account."""
    if not jobs.apis:
        return {}
    if len(set(zip(jobs.apis, jobs.ids, strict=True))) < len(jobs.apis):
        jobs = first_of_each(jobs)  # the usage join below is by key: one row each, the one the insert keeps
    if not copies_expected():
        return await count_all(conn, jobs)
    starts: dict[datetime, int] = {}
    periods = [0 if p is None else starts.setdefault(p, len(starts) + 1) for p in jobs.periods]
    # Each column goes as one text of space-separated values: asyncpg encodes an array element by element, at
    # several times the cost of a join, and this is every job. Times are whole microseconds since the epoch,
    # periods an index into their few starts (0: none).
    # `counted` joins the rows `seen` took to the batch for their periods, and writes them in one order (as
    # `add_usage` does), so no two folds deadlock on the same usage rows.
    rows = await conn.fetch(
        """WITH batch AS (
               SELECT api, job_id, account_id, timestamptz 'epoch' + us * interval '1 microsecond' AS completed_at,
                      nullif(period, 0) AS period
               FROM unnest(string_to_array($1, ' '), string_to_array($2, ' '), string_to_array($3, ' '),
                           string_to_array($4, ' ')::int8[], string_to_array($5, ' ')::int4[])
                   AS b(api, job_id, account_id, us, period)),
           new AS (
               INSERT INTO seen (api, job_id, account_id, completed_at)
               SELECT api, job_id, account_id, completed_at FROM batch
               ON CONFLICT DO NOTHING RETURNING api, job_id, account_id, completed_at),
           counted AS (
               INSERT INTO usage (account_id, period_start, api, jobs)
               SELECT b.account_id, ($6::timestamptz[])[b.period], b.api, count(*)
               FROM new JOIN batch AS b USING (api, job_id)
               WHERE b.period IS NOT NULL GROUP BY b.account_id, b.period, b.api ORDER BY 1, 2, 3
               ON CONFLICT (account_id, period_start, api) DO UPDATE SET jobs = usage.jobs + EXCLUDED.jobs)
           SELECT account_id, max(completed_at) AS latest FROM new GROUP BY account_id""",
        spaced(jobs.apis), spaced(jobs.ids), spaced(jobs.accounts),
        micros(jobs.times), " ".join(map(str, periods)), list(starts),
    )
    return {r["account_id"]: r["latest"] for r in rows}


async def count_all(conn: asyncpg.Connection, jobs: Jobs) -> dict[str, datetime]:
    """`count_new` where every job is new: INSERT_SEEN."""
    await conn.execute(INSERT_SEEN, spaced(jobs.apis), spaced(jobs.ids), spaced(jobs.accounts), micros(jobs.times))
    await add_usage(conn, Counter((account, period, api) for account, period, api
                                  in zip(jobs.accounts, jobs.periods, jobs.apis, strict=True) if period is not None))
    latest: dict[str, datetime] = {}
    for account, at in zip(jobs.accounts, jobs.times, strict=True):
        if account not in latest or at > latest[account]:
            latest[account] = at
    return latest


def spaced(values: Sequence[str]) -> str:
    """The values as one text, split back by `string_to_array(…, ' ')`. An id or API name is never empty and has no
    space (events/types.py); one that did would shift the columns (or vanish), so it fails here, as a data error."""
    joined = " ".join(values)
    if joined.count(" ") != len(values) - 1 or "" in values:
        raise ValueError("a job's API name, id or account id is empty or holds a space")
    return joined


def first_of_each(jobs: Jobs) -> Jobs:
    """The batch with each key's first job only: the one `INSERT … ON CONFLICT DO NOTHING` keeps."""
    first: dict[tuple[str, str], int] = {}
    for i, key in enumerate(zip(jobs.apis, jobs.ids, strict=True)):
        first.setdefault(key, i)
    keep = sorted(first.values())
    return Jobs([jobs.apis[i] for i in keep], [jobs.ids[i] for i in keep], [jobs.accounts[i] for i in keep],
                [jobs.times[i] for i in keep], [jobs.periods[i] for i in keep])


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
