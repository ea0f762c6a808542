"""Publishes a projection's outbox to Kafka, in order, and marks what Kafka acknowledged."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from events.publisher import Publisher
from projections.db import transaction
from services.platform.transient import TRANSIENT

log = structlog.get_logger(__name__)


async def relay_once(pool: asyncpg.Pool, schema: str, publisher: Publisher, *, limit: int = 500) -> int:
    """Publish up to `limit` unsent rows; returns how many were sent. Safe to run from several processes."""
    async with transaction(pool, schema) as conn:
        rows = await conn.fetch(
            "SELECT id, topic, key, envelope FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1 "
            "FOR UPDATE SKIP LOCKED",
            limit,
        )
        if not rows:
            return 0
        await publisher.send_raw_many(
            [(publisher.topics.name(r["topic"]), r["key"].encode(), r["envelope"].encode()) for r in rows]
        )
        await conn.execute("UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
    return len(rows)


async def run_relay(pool: asyncpg.Pool, schema: str, publisher: Publisher, *, idle_seconds: float = 0.1) -> None:
    """Relay forever (until cancelled); back off while Kafka or Postgres is unreachable."""
    delay = idle_seconds
    while True:
        try:
            sent = await relay_once(pool, schema, publisher)
            delay = idle_seconds
        except TRANSIENT as error:
            log.warning("outbox relay failed, retrying", schema=schema, error=str(error))
            sent, delay = 0, min(delay * 2, 5.0)
        if not sent:
            await asyncio.sleep(delay)



