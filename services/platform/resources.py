"""What every process needs, opened once and closed once: the Postgres pools and the publisher.

One pool per database: DATABASE_URL's, and one for each other URL a projection is given
(JOBMETER_<NAME>_DATABASE_URL); `Resources.pool_for(projection)` is the pool of that projection's tables.

This is the one place services are wired; handlers receive what they need as arguments. Schemas that are not
a projection's (an area's own records, such as ingest receipts) are named by the composition root, which
passes them in as `Store`s: platform knows no billing area.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import structlog

from events.deadletters import DeadLettered
from events.publisher import Publisher
from events.topics import Topics, TopicsReport, ensure_topics
from jobmeter.settings import Settings
from projections import catalog
from projections.catalog import PROJECTIONS
from projections.db import Connections, connections, create_pool, ping
from projections.migrate import migrate

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Store:
    """A schema an area keeps for itself (not a projection, so never replayed) and the folder of its migrations."""

    schema: str
    migrations: Path


def projection_named(name_or_schema: str) -> str:
    """The projection a consumer name, a former name or a schema names; KeyError otherwise."""
    for projection in PROJECTIONS.values():
        if name_or_schema == projection.schema:
            return projection.name
    return catalog.get(name_or_schema).name


@dataclass
class Resources:
    settings: Settings
    topics: Topics
    pool: asyncpg.Pool  # on DATABASE_URL: the areas' own stores, and every projection not given a database of its own
    publisher: Publisher
    warnings: list[str] = field(default_factory=list)  # what /healthz reports beside "ok" (under-replication)
    pools: dict[str, asyncpg.Pool] = field(default_factory=dict)  # by URL, DATABASE_URL's included: one per database

    def pool_for(self, projection: str) -> asyncpg.Pool:
        """The pool of the database where `projection` (a consumer name or a schema) lives: its fold, its
        positions, its outbox and every read of its tables go there (JOBMETER_<NAME>_DATABASE_URL)."""
        url = self.settings.database_url_for(projection_named(projection))
        return self.pools.get(url, self.pool)

    def connections(self, timeout: float | None = None) -> AbstractAsyncContextManager[Connections]:
        """For a read over several projections: `await db(name)` gives a connection to that projection's database."""
        return connections(self.pool_for, timeout)

    async def dead_letter(self, letters: Sequence[DeadLettered]) -> None:
        await self.publisher.publish_many(list(letters))

    async def ping(self, timeout: float) -> None:
        """Return once every database answers a query, or raise why one did not within `timeout` seconds."""
        for pool in {id(p): p for p in (self.pool, *self.pools.values())}.values():
            await ping(pool, timeout)


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
        await migrate(settings.database_url_for(projection.name), projection.schema, projection.migrations)
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
    pools = {settings.database_url: pool}
    try:
        for url in {settings.database_url_for(name) for name in PROJECTIONS} - set(pools):
            # No connection held until a read or a fold first needs one: a process may never touch that projection.
            pools[url] = await create_pool(url, min_size=0)
        publisher = Publisher(settings.kafka_bootstrap_servers, producer=producer, topics=topics)
        await publisher.start()
        try:
            yield Resources(settings, topics, pool, publisher, warnings=report.warnings(), pools=pools)
        finally:
            await publisher.stop()
    finally:
        for opened in pools.values():
            await opened.close()
