"""Reading the RapidAPI channel: each user's three numbers for a month, and per-account totals."""

from __future__ import annotations

from typing import Any

import asyncpg

from projections.rapidapi.reconcile import UserFigures

# One row per user that any of the three sources knows for the month. Users only the export names have no
# account row: they are the unknown ones. Reported units count only the configured billing object.
FIGURES = """
WITH ledger AS (
    SELECT u.rapidapi_user, count(*) AS n FROM rapidapi.ledger_jobs j
    JOIN rapidapi.users u ON u.account_id = j.account_id
    WHERE j.period = $1 GROUP BY 1
), declared AS (
    SELECT rapidapi_user, sum(units) AS n FROM rapidapi.declared WHERE period = $1 AND billing_object = $2 GROUP BY 1
), reported AS (
    SELECT rapidapi_user, sum(units) AS n FROM rapidapi.reported WHERE period = $1 AND billing_object = $2 GROUP BY 1
), everyone AS (
    SELECT rapidapi_user FROM ledger UNION SELECT rapidapi_user FROM declared UNION SELECT rapidapi_user FROM reported
)
SELECT e.rapidapi_user, u.account_id, coalesce(l.n, 0)::bigint AS ledger_jobs,
       coalesce(d.n, 0)::bigint AS declared_units, coalesce(r.n, 0)::bigint AS reported_units
FROM everyone e
LEFT JOIN rapidapi.users u USING (rapidapi_user)
LEFT JOIN ledger l USING (rapidapi_user)
LEFT JOIN declared d USING (rapidapi_user)
LEFT JOIN reported r USING (rapidapi_user)
ORDER BY e.rapidapi_user
"""


async def figures(conn: asyncpg.Connection, period: str, billing_object: str) -> list[UserFigures]:
    rows = await conn.fetch(FIGURES, period, billing_object)
    return [
        UserFigures(
            rapidapi_user=r["rapidapi_user"],
            account_id=r["account_id"],
            known=r["account_id"] is not None,
            ledger_jobs=r["ledger_jobs"],
            declared_units=r["declared_units"],
            reported_units=r["reported_units"],
        )
        for r in rows
    ]


async def export_imported(conn: asyncpg.Connection, period: str) -> bool:
    """Whether any RapidAPI export row for the month has been imported."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM rapidapi.reported_rows WHERE period = $1)", period))


async def per_account(conn: asyncpg.Connection, period: str, billing_object: str) -> dict[str, dict[str, Any]]:
    """Declared and reported units per account for the month (accounts of linked users only)."""
    rows = await conn.fetch(
        """SELECT u.account_id,
                  (SELECT coalesce(sum(units), 0) FROM rapidapi.declared d
                   WHERE d.rapidapi_user = u.rapidapi_user AND d.period = $1 AND d.billing_object = $2)::bigint
                      AS declared,
                  (SELECT coalesce(sum(units), 0) FROM rapidapi.reported r
                   WHERE r.rapidapi_user = u.rapidapi_user AND r.period = $1 AND r.billing_object = $2)::bigint
                      AS reported
           FROM rapidapi.users u""",
        period, billing_object,
    )
    return {r["account_id"]: {"declared": r["declared"], "reported": r["reported"]} for r in rows}


# What the console shows


async def plans(conn: asyncpg.Connection) -> dict[str, str | None]:
    """The RapidAPI plan of each account derived from a RapidAPI user (None until a plan was seen)."""
    rows = await conn.fetch("SELECT account_id, plan FROM rapidapi.users")
    return {r["account_id"]: r["plan"] for r in rows}


async def user(conn: asyncpg.Connection, rapidapi_user: str) -> asyncpg.Record | None:
    """A marketplace user's account and plan, if the projection knows the user."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT account_id, plan FROM rapidapi.users WHERE rapidapi_user = $1", rapidapi_user
    )
    return row


async def settled_months(conn: asyncpg.Connection, settle_seconds: float) -> list[str]:
    """Months with an export whose last row was logged at least `settle_seconds` ago."""
    rows = await conn.fetch(
        """SELECT period FROM rapidapi.reported_rows GROUP BY period
           HAVING max(logged_at) <= now() - make_interval(secs => $1) ORDER BY period""",
        settle_seconds,
    )
    return [r["period"] for r in rows]
