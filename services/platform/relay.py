"""Publishes a projection's outbox to Kafka, in order, and marks what Kafka acknowledged."""

from __future__ import annotations

import asyncpg

from events.publisher import Publisher
from projections.db import transaction
from projections.outbox import claim_unsent, mark_sent
from services.platform.poll import PollPolicy, poll


async def relay_once(pool: asyncpg.Pool, schema: str, publisher: Publisher, *, limit: int = 500) -> int:
    """Publish up to `limit` unsent rows; returns how many were sent. Safe to run from several processes."""
    async with transaction(pool, schema) as conn:
        rows = await claim_unsent(conn, limit)
        if not rows:
            return 0
        await publisher.send_raw_many(
            [(publisher.topics.name(r.topic), r.key.encode(), r.envelope.encode()) for r in rows]
        )
        await mark_sent(conn, rows)
    return len(rows)


async def run_relay(pool: asyncpg.Pool, schema: str, publisher: Publisher, *, idle_seconds: float = 0.1) -> None:
    """Relay forever (until cancelled); back off while Kafka or Postgres is unreachable."""

    async def one_pass() -> bool:
        return await relay_once(pool, schema, publisher) > 0

    await poll(f"{schema} relay", one_pass, PollPolicy(idle=idle_seconds, max_backoff=5.0))
