"""The real local stack for integration tests, and an isolated slice of it per test.

Each test that asks for `settings` gets a database and a topic prefix of its own (services.devtools.sandbox), so tests
never see each other's events or rows, and a consumer killed in one test leaves nothing behind for the next.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from jobmeter.settings import Settings
from services.devtools.sandbox import close_sandbox, open_sandbox
from services.devtools.stack import up


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    return up(quiet=True)


@pytest.fixture
async def settings(stack: dict[str, str]) -> AsyncIterator[Settings]:
    base = Settings(
        kafka_bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        database_url=stack["DATABASE_URL"],
        stripe_api_base=stack["STRIPE_API_BASE"],
    )
    sandbox = await open_sandbox(base, jobmeter_partitions=3, jobmeter_batch_timeout_ms=50)
    yield sandbox
    await close_sandbox(base, sandbox)
