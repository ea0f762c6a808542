"""What every process needs, opened once and closed once: the Postgres pool and the publisher.

This is the one place services are wired; handlers receive what they need as arguments.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from events.deadletters import DeadLettered
from events.publisher import Publisher
from events.topics import Topics, ensure_topics
from jobmeter.settings import Settings
from projections.catalog import PROJECTIONS
from projections.db import create_pool
from projections.migrate import migrate

INGEST_MIGRATIONS = Path(__file__).parent / "ingest_store"
WEBHOOK_MIGRATIONS = Path(__file__).parent / "webhook_store"


@dataclass
class Resources:
    settings: Settings
    topics: Topics
    pool: asyncpg.Pool
    publisher: Publisher

    async def dead_letter(self, letters: Sequence[DeadLettered]) -> None:
        await self.publisher.publish_many(list(letters))


async def prepare(settings: Settings) -> None:
    """Topics and schemas: idempotent, safe for every process to run at start."""
    topics = Topics(settings.jobmeter_topic_prefix)
    await ensure_topics(settings.kafka_bootstrap_servers, topics, settings.jobmeter_partitions)
    for projection in PROJECTIONS.values():
        await migrate(settings.database_url, projection.schema, projection.migrations)
    await migrate(settings.database_url, "ingest", INGEST_MIGRATIONS)
    await migrate(settings.database_url, "webhooks", WEBHOOK_MIGRATIONS)


@asynccontextmanager
async def open_resources(settings: Settings, *, producer: str) -> AsyncIterator[Resources]:
    await prepare(settings)
    topics = Topics(settings.jobmeter_topic_prefix)
    pool = await create_pool(settings.database_url)
    publisher = Publisher(settings.kafka_bootstrap_servers, producer=producer, topics=topics)
    await publisher.start()
    try:
        yield Resources(settings, topics, pool, publisher)
    finally:
        await publisher.stop()
        await pool.close()
