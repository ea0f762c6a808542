"""The real local stack for integration tests, and an isolated slice of it per test.

Each test that asks for `settings` gets a database and a topic prefix of its own (services.devtools.sandbox), so tests
never see each other's events or rows, and a consumer killed in one test leaves nothing behind for the next.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from jobmeter.settings import Settings
from services.devtools.stack import up
from tests.integration.helpers import stack_sandbox


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    return up(quiet=True)


@pytest.fixture
async def settings(stack: dict[str, str]) -> AsyncIterator[Settings]:
    async with stack_sandbox(stack) as sandbox:
        yield sandbox
