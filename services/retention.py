"""Retention of the ingest receipts.

A receipt only lets ingest answer "duplicate" to a client that retries a job it already sent; counting each job
once is the ledger's work, by `(api, job_id)`, whenever the job arrives. So receipts are kept as long as a
client may retry (`JOBMETER_INGEST_RECEIPT_DAYS`) and no longer: a retry after that is published again and still
counted once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from services.resources import Resources

log = structlog.get_logger(__name__)

# In chunks, so that pruning a large backlog never holds many row locks or one long transaction.
PRUNE = """
DELETE FROM ingest.receipts
WHERE ctid = ANY(ARRAY(SELECT ctid FROM ingest.receipts WHERE received_at < $1 LIMIT $2))
"""


async def prune_receipts(pool: asyncpg.Pool, before: datetime, *, chunk: int = 10_000) -> int:
    """Delete the receipts received before `before`; returns how many."""
    total = 0
    while True:
        async with pool.acquire() as conn:
            status = await conn.execute(PRUNE, before, chunk)
        removed = int(status.split()[-1])
        total += removed
        if removed < chunk:
            return total


async def keep_receipts(res: Resources) -> None:
    """Prune now and then, for as long as the process runs (a background worker of the HTTP app)."""
    s = res.settings
    while True:
        removed = await prune_receipts(res.pool, datetime.now(UTC) - timedelta(days=s.jobmeter_ingest_receipt_days))
        if removed:
            log.info("ingest receipts pruned", removed=removed, older_than_days=s.jobmeter_ingest_receipt_days)
        await asyncio.sleep(s.jobmeter_retention_interval_seconds)
