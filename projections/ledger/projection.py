"""The ledger's fold: set-based, one statement per batch, whatever its size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import asyncpg

from events.envelope import Event
from events.jobs import JobCompleted, job_fact_hex
from projections.columns import micros
from projections.first_seen import Unchecked
from projections.projection import Projection
from projections.records import Recorded

# A job published twice is counted once: the insert skips known (api, job_id) (or, unchecked, fails on one:
# projections.first_seen) and only the rows it really inserted reach the hourly counts. Duplicates within one batch
# are skipped the same way. The counts are locked in key order, so transactions folding side by side never wait on
# each other in a cycle. Every column travels as one text (projections.columns).
APPLY_JOBS = Unchecked.of("""
WITH new AS (
    INSERT INTO jobs (api, job_id, account_id, channel, mode, completed_at, logged_at, event_id)
    SELECT api, job_id, account_id, channel, mode, timestamptz 'epoch' + completed_us * interval '1 microsecond',
           timestamptz 'epoch' + logged_us * interval '1 microsecond', event_id
    FROM unnest(string_to_array($1, ' '), string_to_array($2, ' '), string_to_array($3, ' '),
                string_to_array($4, ' '), string_to_array($5, ' '), string_to_array($6, ' ')::int8[],
                string_to_array($7, ' ')::int8[], string_to_array($8, ' ')::uuid[])
        AS batch(api, job_id, account_id, channel, mode, completed_us, logged_us, event_id)
    ON CONFLICT (api, job_id) DO NOTHING
    RETURNING account_id, api, channel, date_trunc('hour', completed_at, 'UTC') AS hour
)
INSERT INTO hourly (account_id, api, channel, hour, jobs)
SELECT account_id, api, channel, hour, count(*) FROM new GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
ON CONFLICT (account_id, api, channel, hour) DO UPDATE SET jobs = hourly.jobs + EXCLUDED.jobs
""", "ON CONFLICT (api, job_id) DO NOTHING")


def job_rows(events: Sequence[Recorded[Event]]) -> list[str]:
    """Arguments of APPLY_JOBS from the JobCompleted events of a batch (other types are not the ledger's)."""
    items = [item for item in events if isinstance(item.event, JobCompleted)]
    jobs = [cast(JobCompleted, item.event) for item in items]
    # One comprehension per column: this runs for every event of the log, and beats a row-by-row append loop.
    join = " ".join
    return [
        join([j.api for j in jobs]),
        join([j.job_id for j in jobs]),
        join([j.account_id for j in jobs]),
        join([j.channel for j in jobs]),
        join([j.mode for j in jobs]),
        micros([j.completed_at for j in jobs]),
        micros([item.logged_at for item in items]),
        join([job_fact_hex(item.envelope, job) for item, job in zip(items, jobs, strict=True)]),
    ]


class UsageLedger(Projection):
    name = "ledger"
    schema = "ledger"
    topics = ("jobs",)
    migrations = Path(__file__).parent / "migrations"
    tables = ("jobs", "hourly")
    side_by_side = 2  # a unique insert and a count increment: see Projection.side_by_side

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        columns = job_rows(events)
        if columns[0]:  # any job at all
            await conn.execute(APPLY_JOBS.sql, *columns)
