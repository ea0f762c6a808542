"""Reads of the key lifecycle's tables (schema `key_lifecycle`), for the workers beside its fold and the console.

Every function takes a connection. The workers open theirs with the schema on the search path (they may run
against a replay's schema), so these name tables without a schema.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg


async def past_due_since_before(conn: asyncpg.Connection, cutoff: datetime) -> list[asyncpg.Record]:
    """Customers past due since `cutoff` or earlier (customer_id, past_due_since): whose grace may be over."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT customer_id, past_due_since FROM customers WHERE standing = 'past_due' AND past_due_since <= $1",
        cutoff,
    )
    return rows


# What the console shows (the live `key_lifecycle` schema, named: the console reads no replay's shadow)


async def standings(conn: asyncpg.Connection) -> dict[str, str]:
    """Each known Stripe customer's payment standing."""
    rows = await conn.fetch("SELECT customer_id, standing FROM key_lifecycle.customers")
    return {r["customer_id"]: r["standing"] for r in rows}
