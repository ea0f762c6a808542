"""Retention of the tables that only remember deliveries (e.g. ingest receipts and the Stripe webhook log).

A receipt lets ingest answer "duplicate" to a client that retries a job it already sent, and a webhook log row
answers Stripe's redelivery of an event already on the bus. Neither is what keeps billing exact: the ledger
counts a job once by `(api, job_id)`, and every fold that acts on a Stripe event keys its effect by the event's
identity. So they are kept as long as a retry may come (`JOBMETER_INGEST_RECEIPT_DAYS`, and
`JOBMETER_WEBHOOK_LOG_DAYS`, beyond the 30 days Stripe keeps an event) and no longer: a retry after that is
published again and still counted once.

Which tables, for how long, and the statement that prunes each come from the composition root: each table's
owner holds its SQL, and platform knows no billing area.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from services.platform.poll import PollPolicy, poll
from services.platform.resources import Resources

log = structlog.get_logger(__name__)

# Deletes up to `limit` rows received before the given time; returns how many.
PruneChunk = Callable[[asyncpg.Connection, datetime, int], Awaitable[int]]


@dataclass(frozen=True)
class Retained:
    """A table kept for `days`, and its owner's statement that prunes one chunk of what is older."""

    table: str
    days: int
    prune: PruneChunk


async def prune(pool: asyncpg.Pool, table: Retained, before: datetime, *, chunk: int = 10_000) -> int:
    """Delete the rows of `table` received before `before`, in chunks, so that pruning a large backlog never holds
    many row locks or one long transaction; returns how many."""
    total = 0
    while True:
        async with pool.acquire() as conn:
            removed = await table.prune(conn, before, chunk)
        total += removed
        if removed < chunk:
            return total


async def keep_for_their_days(res: Resources, kept: Sequence[Retained]) -> None:
    """Prune now and then, for as long as the process runs (a background worker of the HTTP app)."""

    async def one_pass() -> bool:
        for table in kept:
            removed = await prune(res.pool, table, datetime.now(UTC) - timedelta(days=table.days))
            if removed:
                log.info("old rows pruned", table=table.table, removed=removed, older_than_days=table.days)
        return False  # each pass prunes everything due: the next one waits the interval

    await poll("retention", one_pass, PollPolicy(idle=res.settings.jobmeter_retention_interval_seconds))
