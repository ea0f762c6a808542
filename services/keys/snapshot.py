"""What the key index starts from: the key store's and the account registry's rows, each read in one snapshot with
the positions its projection committed beside them.

Rows and positions are written in one transaction (`projections/fold.py`), so read in one REPEATABLE READ
transaction they agree: the rows hold exactly the records before those positions, and the index need only read
the log from there. Each projection is read in its own transaction, on its own database
(JOBMETER_<NAME>_DATABASE_URL): what must agree is one projection's rows with its own positions, topic by topic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg

from projections.accounts import queries as accounts
from projections.keys import queries as keys
from projections.positions import Partition
from services.platform.resources import Resources


@dataclass(frozen=True)
class Snapshot:
    keys: list[asyncpg.Record] = field(default_factory=list)  # key_id, account_id, key_hash, state
    suspensions: list[asyncpg.Record] = field(default_factory=list)  # each source's latest decision per account
    models: dict[str, str] = field(default_factory=dict)  # account → billing model
    positions: dict[Partition, int] = field(default_factory=dict)  # where the log continues past these rows


@asynccontextmanager
async def _one_snapshot(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        yield conn


async def read_snapshot(res: Resources, keys_topic: str, accounts_topic: str) -> Snapshot:
    """The rows the index loads and, per partition of the keys and accounts topics, the next offset past them."""
    async with _one_snapshot(res.pool_for("keys")) as conn:
        known = await keys.key_hashes(conn)
        suspensions = await keys.suspensions(conn)
        key_positions = await keys.positions(conn, keys_topic)
    async with _one_snapshot(res.pool_for("accounts")) as conn:
        models = await accounts.models(conn)
        account_positions = await accounts.positions(conn, accounts_topic)
    positions = {(keys_topic, p): o for p, o in key_positions.items()}
    positions.update({(accounts_topic, p): o for p, o in account_positions.items()})
    return Snapshot(known, suspensions, models, positions)
