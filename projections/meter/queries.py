"""Reading the meter reporter's reports: what Stripe was sent, per account."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import asyncpg

from projections.db import has_table


async def sent_per_account(conn: asyncpg.Connection, start: datetime, end: datetime) -> dict[str, int] | None:
    """The value sent to Stripe per account, for windows starting in [start, end); None where the meter reporter
    does not run (its table does not exist)."""
    if not await has_table(conn, "meter.reports"):
        return None
    rows = await conn.fetch(
        """SELECT account_id, sum(value)::bigint AS sent FROM meter.reports
           WHERE state = 'sent' AND window_start >= $1 AND window_start < $2 GROUP BY 1""",
        start, end,
    )
    return {r["account_id"]: r["sent"] for r in rows}


class Recorded(NamedTuple):
    recorded: int  # jobs the meter reporter recorded for Stripe, in any state
    sent: int  # of those, what Stripe acknowledged


NOTHING_RECORDED = Recorded(0, 0)


async def recorded_in_period(conn: asyncpg.Connection, account_id: str, start: datetime, end: datetime) -> Recorded:
    """The account's jobs recorded for Stripe in windows starting in [start, end), as Stripe's meter sees them."""
    row = await conn.fetchrow(
        """SELECT coalesce(sum(value), 0)::bigint AS recorded,
                  coalesce(sum(value) FILTER (WHERE state = 'sent'), 0)::bigint AS sent
           FROM meter.reports WHERE account_id = $1 AND window_start >= $2 AND window_start < $3""",
        account_id, start, end,
    )
    return Recorded(int(row["recorded"]), int(row["sent"]))


# Per subscription customer the meter knows (its own view of the registry): what it recorded, sent, still holds
# or could not report in windows starting in [$1, $2), and the jobs it parked while the customer was unknown.
FIGURES_PER_CUSTOMER = """
WITH customers AS (
    SELECT account_id, customer_id FROM meter.accounts
    WHERE model = 'subscription' AND customer_id IS NOT NULL AND ($3::text IS NULL OR account_id = $3)
),
reported AS (
    SELECT account_id,
           coalesce(sum(value), 0)::bigint AS recorded,
           coalesce(sum(value) FILTER (WHERE state = 'sent'), 0)::bigint AS sent,
           coalesce(sum(value) FILTER (WHERE state IN ('pending', 'sending')), 0)::bigint AS unsent,
           coalesce(sum(value) FILTER (WHERE state IN ('expired', 'failed')), 0)::bigint AS unreportable
    FROM meter.reports WHERE window_start >= $1 AND window_start < $2 GROUP BY 1
),
parked AS (
    SELECT account_id, count(*)::bigint AS jobs FROM meter.parked
    WHERE completed_at >= $1 AND completed_at < $2 GROUP BY 1
)
SELECT c.account_id, c.customer_id, coalesce(m.recorded, 0) AS recorded,
       coalesce(m.sent, 0) AS sent, coalesce(m.unsent, 0) AS unsent, coalesce(m.unreportable, 0) AS unreportable,
       coalesce(p.jobs, 0) AS parked
FROM customers c LEFT JOIN reported m USING (account_id) LEFT JOIN parked p USING (account_id)
ORDER BY c.account_id
"""


async def figures_per_customer(
    conn: asyncpg.Connection, start: datetime, end: datetime, account_id: str | None = None
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(FIGURES_PER_CUSTOMER, start, end, account_id)
    return rows


# What the console shows


async def latest_reports(conn: asyncpg.Connection, account_id: str | None, limit: int) -> list[asyncpg.Record]:
    """The latest reports (of one account, when given), newest window first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT account_id, customer_id, window_start, seq, value, state, attempts, last_error, sent_at, identifier
           FROM meter.reports WHERE $1::text IS NULL OR account_id = $1
           ORDER BY window_start DESC, customer_id, seq LIMIT $2""",
        account_id, limit,
    )
    return rows


async def totals_by_state(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """How many reports, and how many jobs in them, per state (state, reports, jobs)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT state, count(*)::bigint AS reports, sum(value)::bigint AS jobs FROM meter.reports GROUP BY 1 ORDER BY 1"
    )
    return rows


# What the developer tools read (the chaos run's invariants)


async def value_per_customer_and_state(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The value of every report per Stripe customer and state (customer_id, state, value)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT customer_id, state, sum(value)::bigint AS value FROM meter.reports GROUP BY 1, 2"
    )
    return rows


async def sent_reports(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every report sent to Stripe: identifier, customer_id, window_start, seq, value."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT identifier, customer_id, window_start, seq, value FROM meter.reports WHERE state = 'sent'"
    )
    return rows


async def outbox_unsent(conn: asyncpg.Connection) -> int:
    """`MeterUsageReported` events recorded but not yet relayed to the bus."""
    return int(await conn.fetchval("SELECT count(*) FROM meter.outbox WHERE sent_at IS NULL"))


# What `jobmeter doctor` reads: reports that should have reached Stripe by now, and jobs still parked


async def unfinished_reports(conn: asyncpg.Connection, window_before: datetime) -> list[asyncpg.Record]:
    """Reports not sent (pending or sending) of windows that started before `window_before`, every report Stripe
    refused (failed), and those that came too late for it (expired) until an operator acknowledged billing them by
    hand; oldest window first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT account_id, customer_id, window_start, window_seconds, seq, value, state, attempts, last_error,
                  claimed_until, identifier
           FROM meter.reports
           WHERE (state IN ('pending', 'sending') AND window_start < $1) OR state = 'failed'
              OR (state = 'expired' AND acknowledged_at IS NULL)
           ORDER BY window_start, customer_id, seq""",
        window_before,
    )
    return rows


async def parked_jobs_per_account(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Per account whose jobs the meter holds: how many, the oldest one's completion, and what the meter knows of
    the account (model and customer NULL when it is not registered)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT p.account_id, count(*)::bigint AS jobs, min(p.completed_at) AS oldest, a.model, a.customer_id
           FROM meter.parked p LEFT JOIN meter.accounts a USING (account_id)
           GROUP BY p.account_id, a.model, a.customer_id ORDER BY 3"""
    )
    return rows
