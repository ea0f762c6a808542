"""The RapidAPI channel's fold: identities, plans, declarations, RapidAPI's reported rows, and our jobs.

The `rapidapi` topic is folded in log order (its facts are few, and a plan change or a later export must
follow what came before); the `jobs` topic is folded set-based, keeping only the jobs that came through
RapidAPI, once per (api, job_id). Reconciliation reads these tables; its discrepancies go out through this
projection's outbox (`emits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from events.envelope import Event
from events.jobs import JobCompleted
from events.rapidapi import (
    BillingUnitsDeclared,
    MarketplacePlanChanged,
    MarketplaceUserLinked,
    RapidApiUsageReported,
)
from projections.columns import micros
from projections.first_seen import Unchecked
from projections.projection import Projection
from projections.records import Recorded

# Every RapidAPI-channel job, once; its period is the UTC month it completed in, as month_of says (Postgres works it
# out: per job, `strftime` and the asyncpg array encoder were most of this fold's Python). Every column travels as one
# text (projections.columns).
APPLY_LEDGER_JOBS = Unchecked.of("""
INSERT INTO ledger_jobs (api, job_id, account_id, completed_at, period)
SELECT api, job_id, account_id, at, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM')
FROM (SELECT api, job_id, account_id, timestamptz 'epoch' + us * interval '1 microsecond' AS at
      FROM unnest(string_to_array($1, ' '), string_to_array($2, ' '), string_to_array($3, ' '),
                  string_to_array($4, ' ')::int8[]) AS batch(api, job_id, account_id, us)) AS jobs
ON CONFLICT (api, job_id) DO NOTHING
""", "ON CONFLICT (api, job_id) DO NOTHING")


def month_of(at: datetime) -> str:
    """The billing period (UTC calendar month) a moment falls in, as `YYYY-MM`."""
    return at.astimezone(UTC).strftime("%Y-%m")


def rapidapi_jobs(events: Sequence[Recorded[Event]]) -> list[str]:
    """Arguments of APPLY_LEDGER_JOBS: the RapidAPI-channel jobs of a batch, first copy of each (none: empty
    texts)."""
    first: dict[tuple[str, str], JobCompleted] = {}
    for item in events:
        job = item.event
        if isinstance(job, JobCompleted) and job.channel == "rapidapi":
            first.setdefault((job.api, job.job_id), job)
    jobs = list(first.values())
    join = " ".join
    return [join([j.api for j in jobs]), join([j.job_id for j in jobs]), join([j.account_id for j in jobs]),
            micros([j.completed_at for j in jobs])]


class RapidApiChannel(Projection):
    name = "rapidapi"
    schema = "rapidapi"
    topics = ("rapidapi", "jobs")
    channel = "rapidapi"  # its own jobs only, to reconcile with what RapidAPI reports
    migrations = Path(__file__).parent / "migrations"
    tables = ("users", "plans", "declared", "reported_rows", "reported", "ledger_jobs")
    emits = True

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        columns = rapidapi_jobs(events)
        if columns[0]:
            await conn.execute(APPLY_LEDGER_JOBS.sql, *columns)
        for item in events:
            event = item.event
            if isinstance(event, MarketplaceUserLinked):
                await _link(conn, event, item.envelope.occurred_at)
            elif isinstance(event, MarketplacePlanChanged):
                await _plan(conn, event)
            elif isinstance(event, BillingUnitsDeclared):
                await _declared(conn, event)
            elif isinstance(event, RapidApiUsageReported):
                await _reported(conn, event, item.logged_at)


async def _link(conn: asyncpg.Connection, event: MarketplaceUserLinked, at: datetime) -> None:
    await conn.execute(
        """INSERT INTO users (rapidapi_user, account_id, linked_at) VALUES ($1, $2, $3)
           ON CONFLICT (rapidapi_user) DO NOTHING""",
        event.rapidapi_user, event.account_id, at,
    )


async def _plan(conn: asyncpg.Connection, event: MarketplacePlanChanged) -> None:
    # A plan change may be folded before the link it follows on another process's clock: create the user then.
    await conn.execute(
        """INSERT INTO users (rapidapi_user, account_id, linked_at) VALUES ($1, $2, $3)
           ON CONFLICT (rapidapi_user) DO NOTHING""",
        event.rapidapi_user, event.account_id, event.seen_at,
    )
    # Several gateway processes may each report the same change: only a real change (in seen_at order) counts.
    changed = await conn.fetchval(
        """UPDATE users SET plan = $2, plan_seen_at = $3
           WHERE rapidapi_user = $1 AND (plan_seen_at IS NULL OR plan_seen_at < $3) AND plan IS DISTINCT FROM $2
           RETURNING 1""",
        event.rapidapi_user, event.plan, event.seen_at,
    )
    if changed:
        await conn.execute(
            "INSERT INTO plans (rapidapi_user, seen_at, plan) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            event.rapidapi_user, event.seen_at, event.plan,
        )
    else:
        # A repeat of the current plan seen later moves nothing; a stale report moves nothing either.
        await conn.execute(
            "UPDATE users SET plan_seen_at = $2 WHERE rapidapi_user = $1 AND plan = $3 AND plan_seen_at < $2",
            event.rapidapi_user, event.seen_at, event.plan,
        )


async def _declared(conn: asyncpg.Connection, event: BillingUnitsDeclared) -> None:
    await conn.execute(
        """INSERT INTO declared (api, job_id, rapidapi_user, account_id, billing_object, units, declared_at, period)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (api, job_id) DO NOTHING""",
        event.api, event.job_id, event.rapidapi_user, event.account_id, event.billing_object, event.count,
        event.declared_at, month_of(event.declared_at),
    )


async def _reported(conn: asyncpg.Connection, event: RapidApiUsageReported, logged_at: datetime) -> None:
    new = await conn.fetchval(
        """INSERT INTO reported_rows (source_digest, line, source_file, period, rapidapi_user, subscription_owner_id,
                                      api_name, plan, billing_object, units, logged_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING RETURNING 1""",
        event.source_digest, event.line, event.source_file, event.period, event.rapidapi_user,
        event.subscription_owner_id, event.api_name, event.plan, event.billing_object, event.units, logged_at,
    )
    if not new:
        return  # the same row of the same file, imported again
    # Rows of one file for the same key add up (a user may hold several subscriptions); a newer file for the
    # same month replaces what an older one said, so importing a corrected export never double counts.
    await conn.execute(
        """INSERT INTO reported (period, rapidapi_user, api_name, billing_object, units, source_digest)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (period, rapidapi_user, api_name, billing_object) DO UPDATE
           SET units = CASE WHEN reported.source_digest = EXCLUDED.source_digest
                            THEN reported.units + EXCLUDED.units ELSE EXCLUDED.units END,
               source_digest = EXCLUDED.source_digest""",
        event.period, event.rapidapi_user, event.api_name, event.billing_object, event.units, event.source_digest,
    )
