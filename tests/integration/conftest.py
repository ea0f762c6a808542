"""The real local stack for integration tests, and an isolated slice of it per test.

Each test that asks for `settings` gets a database and a topic prefix of its own, so tests never see each
other's events or rows, and a consumer killed in one test leaves nothing behind for the next.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from jobmeter.settings import Settings
from services.stack import up


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    return up(quiet=True)


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture
async def settings(stack: dict[str, str]) -> AsyncIterator[Settings]:
    tag = uuid.uuid4().hex[:10]
    admin_dsn = stack["DATABASE_URL"]
    database = f"jobmeter_test_{tag}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    yield Settings(
        kafka_bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        database_url=with_database(admin_dsn, database),
        stripe_api_base=stack["STRIPE_API_BASE"],
        jobmeter_topic_prefix=f"t{tag}.",
        jobmeter_partitions=3,
        jobmeter_batch_timeout_ms=50,
    )
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()
    await _delete_topics(stack["KAFKA_BOOTSTRAP_SERVERS"], f"t{tag}.")


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    """Leave the shared broker as we found it: a long suite would otherwise pile up thousands of partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    except KafkaError:
        pass  # a broker restarted by a fault-injection test: the topics are harmless leftovers
    finally:
        await admin.close()
