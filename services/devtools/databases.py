"""The devtools' connections to the projections' databases: each projection may live in a Postgres of its own
(JOBMETER_<NAME>_DATABASE_URL, `Settings.database_url_for`), so a look at its tables goes there; projections that
share a database share one connection (and one snapshot)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg

from jobmeter.settings import Settings

Connections = dict[str, asyncpg.Connection]  # consumer name → a connection to its projection's database


@asynccontextmanager
async def projection_connections(settings: Settings, names: Iterable[str], *, snapshot: bool = False,
                                 timeout: float = 60) -> AsyncIterator[Connections]:
    """A connection per distinct database among the named projections'; with `snapshot`, each inside a read-only
    repeatable-read transaction, so every read through it sees one moment."""
    urls = {name: settings.database_url_for(name) for name in names}
    async with AsyncExitStack() as stack:
        opened: dict[str, asyncpg.Connection] = {}
        for url in dict.fromkeys(urls.values()):
            conn = await asyncpg.connect(url, timeout=timeout)
            stack.push_async_callback(conn.close)
            if snapshot:
                transaction = conn.transaction(isolation="repeatable_read", readonly=True)
                await transaction.start()
                stack.push_async_callback(transaction.rollback)
            opened[url] = conn
        yield {name: opened[url] for name, url in urls.items()}
