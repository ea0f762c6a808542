"""Reads of the key store's tables (`keys.keys`, `keys.suspensions`): the one place outside its fold that queries them.

Every function takes a connection, so a caller can read inside a transaction of its own.
"""

from __future__ import annotations

import asyncpg

KEY_VIEW = """
SELECT k.key_id, k.account_id, k.prefix, k.state, coalesce(s.suspended, false) AS suspended,
       CASE WHEN s.suspended THEN s.reason END AS suspended_reason, k.issued_at, k.revoked_at, k.revoke_reason
FROM keys.keys AS k LEFT JOIN keys.suspensions AS s USING (account_id)
"""


async def key(conn: asyncpg.Connection, key_id: str) -> asyncpg.Record | None:
    """One key as operators see it (with its account's suspension), or None."""
    return await conn.fetchrow(f"{KEY_VIEW} WHERE k.key_id = $1", key_id)


async def keys(conn: asyncpg.Connection, account_id: str | None = None) -> list[asyncpg.Record]:
    """Every key (of one account, when given) as operators see it, by account and issue time."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"{KEY_VIEW} WHERE $1::text IS NULL OR k.account_id = $1 ORDER BY k.account_id, k.issued_at", account_id
    )
    return rows


async def key_state(conn: asyncpg.Connection, key_id: str) -> str | None:
    """'active' or 'revoked' once the key store has folded the key's issue; None before."""
    state: str | None = await conn.fetchval("SELECT state FROM keys.keys WHERE key_id = $1", key_id)
    return state


async def key_hashes(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every key's id, account, hash and state: what the key check's index loads."""
    rows: list[asyncpg.Record] = await conn.fetch("SELECT key_id, account_id, key_hash, state FROM keys.keys")
    return rows


async def suspensions(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every account's latest suspension decision (account_id, sequence, suspended, reason)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT account_id, sequence, suspended, reason FROM keys.suspensions"
    )
    return rows


# What the console shows


async def suspension(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    """The account's latest suspension decision, None when there never was one."""
    return await conn.fetchrow("SELECT * FROM keys.suspensions WHERE account_id = $1", account_id)
