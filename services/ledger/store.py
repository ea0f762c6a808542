"""The ingest receipts (`ingest.receipts`): which jobs Kafka has acknowledged, to answer "duplicate" to a retry.

Not a projection: ingest writes a receipt after the publish, and the retention worker prunes old ones. This
module is the one place that holds their SQL; every function takes a connection. Columns go to Postgres as one
space-separated string each, as the ledger's do (projections/ledger/projection.py): asyncpg's array encoder costs
two abstract-base-class checks per element, and no identifier of a job can hold whitespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import asyncpg

from events.jobs import JobCompleted

SCHEMA = "ingest"
MIGRATIONS = Path(__file__).parent / "ingest_migrations"
TABLE = "ingest.receipts"


async def received(conn: asyncpg.Connection, jobs: Sequence[JobCompleted]) -> set[tuple[str, str]]:
    """The (api, job_id) of these jobs that already have a receipt."""
    rows = await conn.fetch(
        """SELECT api, job_id FROM ingest.receipts
           WHERE (api, job_id) IN (SELECT * FROM unnest(string_to_array($1, ' '), string_to_array($2, ' ')))""",
        " ".join([j.api for j in jobs]),
        " ".join([j.job_id for j in jobs]),
    )
    return {(r["api"], r["job_id"]) for r in rows}


async def record(conn: asyncpg.Connection, jobs: Sequence[JobCompleted]) -> int:
    """Write a receipt for each job; returns how many were new (a racing copy may have written some first)."""
    rows = await conn.fetch(
        """INSERT INTO ingest.receipts (api, job_id, account_id)
           SELECT * FROM unnest(string_to_array($1, ' '), string_to_array($2, ' '), string_to_array($3, ' '))
           ON CONFLICT DO NOTHING RETURNING 1""",
        " ".join([j.api for j in jobs]),
        " ".join([j.job_id for j in jobs]),
        " ".join([j.account_id for j in jobs]),
    )
    return len(rows)


async def prune(conn: asyncpg.Connection, before: datetime, limit: int) -> int:
    """Delete up to `limit` receipts written before `before` (a chunk: no long transaction); returns how many."""
    status = await conn.execute(
        """DELETE FROM ingest.receipts WHERE ctid = ANY(ARRAY(
               SELECT ctid FROM ingest.receipts WHERE received_at < $1 LIMIT $2))""",
        before, limit,
    )
    return int(status.split()[-1])
