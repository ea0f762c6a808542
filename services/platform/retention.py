"""Retention of the tables that only remember deliveries: ingest receipts and the Stripe webhook log.

A receipt lets ingest answer "duplicate" to a client that retries a job it already sent, and a webhook log row
answers Stripe's redelivery of an event already on the bus. Neither is what keeps billing exact: the ledger
counts a job once by `(api, job_id)`, and every fold that acts on a Stripe event keys its effect by the event's
identity. So they are kept as long as a retry may come (`JOBMETER_INGEST_RECEIPT_DAYS`, and
`JOBMETER_WEBHOOK_LOG_DAYS`, beyond the 30 days Stripe keeps an event) and no longer: a retry after that is
published again and still counted once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from services.platform.resources import Resources

log = structlog.get_logger(__name__)

# In chunks, so that pruning a large backlog never holds many row locks or one long transaction. Only these
# two fixed table names are ever put into the statement.
PRUNE = "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE received_at < $1 LIMIT $2))"
TABLES = ("ingest.receipts", "webhooks.log")


async def prune(pool: asyncpg.Pool, table: str, before: datetime, *, chunk: int = 10_000) -> int:
    """Delete the rows of `table` received before `before`; returns how many."""
    if table not in TABLES:
        raise ValueError(f"no retention for {table!r}")
    statement = PRUNE.format(table=table)
    total = 0
    while True:
        async with pool.acquire() as conn:
            status = await conn.execute(statement, before, chunk)
        removed = int(status.split()[-1])
        total += removed
        if removed < chunk:
            return total


async def keep_for_their_days(res: Resources) -> None:
    """Prune now and then, for as long as the process runs (a background worker of the HTTP app)."""
    s = res.settings
    days = {"ingest.receipts": s.jobmeter_ingest_receipt_days, "webhooks.log": s.jobmeter_webhook_log_days}
    while True:
        for table, kept in days.items():
            removed = await prune(res.pool, table, datetime.now(UTC) - timedelta(days=kept))
            if removed:
                log.info("old rows pruned", table=table, removed=removed, older_than_days=kept)
        await asyncio.sleep(s.jobmeter_retention_interval_seconds)
