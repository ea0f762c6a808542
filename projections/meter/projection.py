"""The meter reporter's fold: jobs of subscription accounts, summed per Stripe customer and window.

The fold only records what must be sent (the `reports` outbox), in the transaction that moves the positions;
`services.meter.sender` sends it. Jobs are deduplicated by (api, job_id) in `jobs_seen`, so a job published twice
is counted once, and a job counted once is reported once.

Billable: `JobCompleted` on the direct channel (RapidAPI bills its own traffic) of an account whose model is
`subscription` and that has a Stripe customer. The fold keeps its own view of the accounts (it reads the accounts
topic too) rather than reading the registry's tables: the registry may not yet have applied an account whose
jobs are already here. A job whose account is unknown or not yet linked is parked, and counted when the account's
event arrives, in whichever order the two topics are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import asyncpg
import structlog

from events.envelope import Event
from events.jobs import JobCompleted
from events.stripe import StripeEventReceived
from jobmeter.settings import Settings
from projections.account_view import (
    ACCOUNT_EVENTS,
    AccountView,
    Elsewhere,
    accounts_of,
    fold_accounts,
    lock_accounts,
)
from projections.first_seen import Unchecked
from projections.meter import reports
from projections.meter.errors import ERROR_REPORT, error_report
from projections.meter.windows import meter_event_identifier, windows_of
from projections.projection import Projection
from projections.records import Recorded

log = structlog.get_logger(__name__)

# Only jobs not seen before reach the sums: duplicates (across batches or within one) are skipped here (or, unchecked,
# fail the statement: projections.first_seen). In the same statement the sums go to each window's open report
# (`pending`): one round trip for the whole chunk, not one per customer and window. Once a sender has claimed a
# report (state 'sending'), its value is frozen and late jobs start the next sequence number: the windows with no
# open report come back, with their next sequence number (every report of the window counts, whatever its state),
# for `open_reports`.
COUNT_NEW_JOBS = Unchecked.of("""
WITH new AS (
    INSERT INTO jobs_seen (api, job_id, account_id, customer_id, window_start)
    SELECT api, job_id, account_id, customer_id, ($6::timestamptz[])[place]
    FROM unnest(string_to_array($1, ' '), string_to_array($2, ' '), string_to_array($3, ' '),
                string_to_array($4, ' '), string_to_array($5, ' ')::int4[])
        AS batch(api, job_id, account_id, customer_id, place)
    ON CONFLICT (api, job_id) DO NOTHING
    RETURNING account_id, customer_id, window_start
), sums AS (
    SELECT customer_id, window_start, min(account_id) AS account_id, count(*)::bigint AS jobs
    FROM new GROUP BY 1, 2
), added AS (
    UPDATE reports AS r SET value = r.value + sums.jobs FROM sums
    WHERE r.customer_id = sums.customer_id AND r.window_start = sums.window_start AND r.state = 'pending'
    RETURNING r.customer_id, r.window_start
)
SELECT s.customer_id, s.window_start, s.account_id, s.jobs,
       (SELECT coalesce(max(seq) + 1, 0) FROM reports AS r
        WHERE r.customer_id = s.customer_id AND r.window_start = s.window_start) AS seq
FROM sums AS s
WHERE NOT EXISTS (SELECT 1 FROM added AS a WHERE a.customer_id = s.customer_id AND a.window_start = s.window_start)
ORDER BY 1, 2
""", "ON CONFLICT (api, job_id) DO NOTHING")

OPEN_REPORTS = """
INSERT INTO reports (customer_id, window_start, seq, account_id, window_seconds, identifier, value)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::int[], $4::text[], $5::int[], $6::text[], $7::bigint[])
"""

PARK = """
INSERT INTO parked (api, job_id, account_id, completed_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
ON CONFLICT (api, job_id) DO NOTHING
"""


async def count_jobs(
    conn: asyncpg.Connection, jobs: Sequence[tuple[str, str, str, datetime]], customers: dict[str, str], width: int
) -> None:
    """Count (api, job_id, account_id, completed_at) of billable accounts into their windows' open reports,
    opening a report where a window has none."""
    if not jobs:
        return
    starts, places = windows_of([j[3] for j in jobs], width)
    join = " ".join  # every column as one text: projections.columns
    unopened = await conn.fetch(
        COUNT_NEW_JOBS.sql,
        join([j[0] for j in jobs]), join([j[1] for j in jobs]), join([j[2] for j in jobs]),
        join([customers[j[2]] for j in jobs]), join(map(str, places)), starts,
    )
    if unopened:
        await conn.execute(
            OPEN_REPORTS, [r["customer_id"] for r in unopened], [r["window_start"] for r in unopened],
            [r["seq"] for r in unopened], [r["account_id"] for r in unopened], [width] * len(unopened),
            [meter_event_identifier(r["customer_id"], r["window_start"], width, r["seq"]) for r in unopened],
            [r["jobs"] for r in unopened],
        )


class MeterReporter(Projection):
    name = "meter"
    not_swappable = (
        "its `reports` table is what Stripe was sent; a rebuild has every window pending again, so the "
        "sender would report them anew (Stripe dedupes meter identifiers for a limited time only, and a rebuild "
        "merges late jobs into sequence numbers that were already sent with smaller values)"
    )
    schema = "meter"
    topics = ("accounts", "jobs", "stripe")  # stripe: meter error reports, for the v2 stream's refusals
    channel = "direct"  # RapidAPI bills its own traffic
    migrations = Path(__file__).parent / "migrations"
    tables = ("accounts", "parked", "jobs_seen", "reports")
    emits = True  # the sender emits MeterUsageReported through this schema's outbox
    chunk = 2000  # a handful of round trips per apply whatever its size: see Projection.chunk

    def __init__(self, window_seconds: int = 60) -> None:
        self.window_seconds = window_seconds
        self.billed_elsewhere: Elsewhere = Elsewhere("subscription")

    def configured(self, settings: Settings) -> MeterReporter:
        return MeterReporter(window_seconds=settings.jobmeter_meter_window_seconds)

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        for item in events:
            if isinstance(item.event, StripeEventReceived) and item.event.type == ERROR_REPORT:
                await self._refused(conn, item.event, item.envelope.occurred_at)
        account_events = [r.event for r in events if isinstance(r.event, ACCOUNT_EVENTS)]
        jobs = [r.event for r in events if isinstance(r.event, JobCompleted) and r.event.channel == "direct"]
        touched = sorted({e.account_id for e in account_events} | {j.account_id for j in jobs})
        if not touched:
            return
        await lock_accounts(conn, "meter", touched)
        await fold_accounts(conn, account_events)
        accounts = await accounts_of(conn, touched)
        self.billed_elsewhere.learn(accounts)
        customers = {a: v.customer_id for a, v in accounts.items() if v.model == "subscription" and v.customer_id}
        billable = [(j.api, j.job_id, j.account_id, j.completed_at) for j in jobs if j.account_id in customers]
        waiting = [j for j in jobs if j.account_id not in accounts or accounts[j.account_id].model == "subscription"]
        waiting = [j for j in waiting if j.account_id not in customers]
        await count_jobs(conn, billable, customers, self.window_seconds)
        if waiting:
            await conn.execute(
                PARK, [j.api for j in waiting], [j.job_id for j in waiting], [j.account_id for j in waiting],
                [j.completed_at for j in waiting],
            )
        await self._release_parked(conn, sorted({e.account_id for e in account_events}), accounts, customers)

    async def _refused(self, conn: asyncpg.Connection, event: StripeEventReceived, at: datetime) -> None:
        """Stripe's validation refused events it had taken: their reports fail, with the reason, until resent."""
        report = error_report(event.data_object)
        for failure in report.failures:
            failed = await reports.fail_reported(conn, failure, report, at)
            log.warning("meter events refused by Stripe's validation", code=failure.code, scope=failure.scope,
                        stripe_count=failure.count, reports_failed=len(failed), stripe_event_id=event.stripe_event_id,
                        identifiers=[r.identifier for r in failed][:20])

    async def _release_parked(
        self, conn: asyncpg.Connection, account_ids: list[str], accounts: dict[str, AccountView],
        customers: dict[str, str],
    ) -> None:
        """Count the parked jobs of accounts that became billable; drop those of accounts that never will be."""
        settled = [a for a in account_ids if a in customers or (a in accounts and accounts[a].model != "subscription")]
        if not settled:
            return
        rows = await conn.fetch(
            "DELETE FROM parked WHERE account_id = ANY($1) RETURNING api, job_id, account_id, completed_at", settled
        )
        released = [(r["api"], r["job_id"], r["account_id"], r["completed_at"]) for r in rows
                    if r["account_id"] in customers]
        await count_jobs(conn, released, customers, self.window_seconds)
