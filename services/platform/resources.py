"""What every process needs, opened once and closed once: the Postgres pool and the publisher.

This is the one place services are wired; handlers receive what they need as arguments. Schemas that are not
a projection's (an area's own records, such as ingest receipts) are named by the composition root, which
passes them in as `Store`s: platform knows no billing area.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import structlog

from events.deadletters import DeadLettered
from events.publisher import Publisher
from events.topics import Topics, TopicsReport, ensure_topics
from jobmeter.settings import Settings
from projections.catalog import PROJECTIONS
from projections.db import create_pool, ping
from projections.migrate import migrate

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Store:
    """A schema an area keeps for itself (not a projection, so never replayed) and the folder of its migrations."""

    schema: str
    migrations: Path


@dataclass
class Resources:
    settings: Settings
    topics: Topics
    pool: asyncpg.Pool
    publisher: Publisher
    warnings: list[str] = field(default_factory=list)  # what /healthz reports beside "ok" (under-replication)

    async def dead_letter(self, letters: Sequence[DeadLettered]) -> None:
        await self.publisher.publish_many(list(letters))

    async def ping(self, timeout: float) -> None:
        """Return once Postgres answers a query, or raise why it did not within `timeout` seconds."""
        await ping(self.pool, timeout)


async def prepare(settings: Settings, stores: Sequence[Store] = ()) -> TopicsReport:
    """Topics, the projections' schemas and the given stores': idempotent, safe for every process to run at start.
    Returns what it found of the topics, so a process can say when they hold fewer copies than configured."""
    topics = Topics(settings.jobmeter_topic_prefix)
    report = await ensure_topics(
        settings.kafka_bootstrap_servers, topics, settings.jobmeter_partitions,
        replication_factor=settings.jobmeter_replication_factor, min_insync=settings.jobmeter_min_insync_replicas,
    )
    for warning in report.warnings():
        log.warning("under-replicated topic", reason=warning)
    for projection in PROJECTIONS.values():
        await migrate(settings.database_url, projection.schema, projection.migrations)
    for store in stores:
        await migrate(settings.database_url, store.schema, store.migrations)
    return report


@asynccontextmanager
async def open_resources(
    settings: Settings, *, producer: str, stores: Sequence[Store] = ()
) -> AsyncIterator[Resources]:
    """The pool and the publisher for one process, after `prepare` (with `stores`, the composition root's)."""
    report = await prepare(settings, stores)
    topics = Topics(settings.jobmeter_topic_prefix)
    pool = await create_pool(settings.database_url)
    publisher = Publisher(settings.kafka_bootstrap_servers, producer=producer, topics=topics)
    await publisher.start()
    try:
        yield Resources(settings, topics, pool, publisher, warnings=report.warnings())
    finally:
        await publisher.stop()
        await pool.close()
