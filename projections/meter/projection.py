"""The meter reporter's fold: jobs of subscription accounts, summed per Stripe customer and window.

The fold only records what must be sent (the `reports` outbox), in the transaction that moves the positions;
`services.meter_sender` sends it. Jobs are deduplicated by (api, job_id) in `jobs_seen`, so a job published twice
is counted once, and a job counted once is reported once.

Billable here: `JobCompleted` on the direct channel (RapidAPI bills its own traffic) of an account whose model is
`subscription` and that has a Stripe customer, as the account registry says at the time of the fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import asyncpg

from events.envelope import Event
from events.jobs import JobCompleted
from jobmeter.settings import get_settings
from projections.meter.windows import meter_event_identifier, window_start
from projections.projection import Projection
from projections.records import Recorded

# Only jobs not seen before reach the sums: duplicates (across batches or within one) are skipped here.
RECORD_NEW_JOBS = """
WITH new AS (
    INSERT INTO jobs_seen (api, job_id, account_id, customer_id, window_start)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
    ON CONFLICT (api, job_id) DO NOTHING
    RETURNING account_id, customer_id, window_start
)
SELECT account_id, customer_id, window_start, count(*)::bigint AS jobs FROM new GROUP BY 1, 2, 3 ORDER BY 2, 3
"""

# The open row of a window takes the jobs; once a sender has claimed it (state 'sending'), its value is frozen
# and late jobs start the next sequence number.
ADD_TO_OPEN = """
UPDATE reports SET value = value + $3
WHERE customer_id = $1 AND window_start = $2 AND state = 'pending' RETURNING seq
"""

NEXT_SEQ = "SELECT coalesce(max(seq) + 1, 0) FROM reports WHERE customer_id = $1 AND window_start = $2"

OPEN_ROW = """
INSERT INTO reports (customer_id, window_start, seq, account_id, window_seconds, identifier, value)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""

BILLABLE_ACCOUNTS = """
SELECT account_id, stripe_customer_id FROM accounts.accounts
WHERE account_id = ANY($1::text[]) AND model = 'subscription' AND stripe_customer_id IS NOT NULL
"""


async def billable_customers(conn: asyncpg.Connection, account_ids: set[str]) -> dict[str, str]:
    """account id -> Stripe customer id, for the accounts whose jobs go to Stripe's meter."""
    rows = await conn.fetch(BILLABLE_ACCOUNTS, sorted(account_ids))
    return {r["account_id"]: r["stripe_customer_id"] for r in rows}


async def add_to_window(
    conn: asyncpg.Connection, account_id: str, customer_id: str, start: datetime, width: int, jobs: int
) -> int:
    """Add jobs to the customer's open report of a window (opening one if none); returns its sequence number."""
    seq = await conn.fetchval(ADD_TO_OPEN, customer_id, start, jobs)
    if seq is not None:
        return int(seq)
    seq = int(await conn.fetchval(NEXT_SEQ, customer_id, start))
    identifier = meter_event_identifier(customer_id, start, width, seq)
    await conn.execute(OPEN_ROW, customer_id, start, seq, account_id, width, identifier, jobs)
    return seq


class MeterReporter(Projection):
    name = "stripe-meter"
    schema = "meter"
    topics = ("jobs",)
    migrations = Path(__file__).parent / "migrations"
    tables = ("jobs_seen", "reports")
    emits = True  # the sender emits MeterUsageReported through this schema's outbox

    def __init__(self, window_seconds: int | None = None) -> None:
        self._window_seconds = window_seconds

    @property
    def window_seconds(self) -> int:
        return self._window_seconds or get_settings().jobmeter_meter_window_seconds

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        jobs = [r.event for r in events if isinstance(r.event, JobCompleted) and r.event.channel == "direct"]
        if not jobs:
            return
        customers = await billable_customers(conn, {j.account_id for j in jobs})
        billable = [j for j in jobs if j.account_id in customers]
        if not billable:
            return
        width = self.window_seconds
        new = await conn.fetch(
            RECORD_NEW_JOBS,
            [j.api for j in billable],
            [j.job_id for j in billable],
            [j.account_id for j in billable],
            [customers[j.account_id] for j in billable],
            [window_start(j.completed_at, width) for j in billable],
        )
        for row in new:
            await add_to_window(conn, row["account_id"], row["customer_id"], row["window_start"], width, row["jobs"])
