"""Reads of the key store's tables (`keys.keys`, `keys.suspensions`): the one place outside its fold that queries them.

Every function takes a connection, so a caller can read inside a transaction of its own.
"""

from __future__ import annotations

import asyncpg

# Every source that holds the account, as `source: reason`, joined in source order: what operators are shown.
HOLDS = """
SELECT account_id, string_agg(source || ': ' || reason, '; ' ORDER BY source) AS reasons,
       array_agg(source ORDER BY source) AS sources
FROM keys.suspensions WHERE suspended GROUP BY account_id
"""

KEY_VIEW = f"""
SELECT k.key_id, k.account_id, k.prefix, k.state, h.account_id IS NOT NULL AS suspended,
       h.reasons AS suspended_reason, coalesce(h.sources, '{{}}'::text[]) AS held_by,
       k.issued_at, k.revoked_at, k.revoke_reason
FROM keys.keys AS k LEFT JOIN ({HOLDS}) AS h USING (account_id)
"""  # noqa: S608 (constants only)


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
    """Every source's latest decision per account (account_id, source, sequence, suspended, reason, until, scope:
    the API surfaces a hold stops, null for all)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT account_id, source, sequence, suspended, reason, until, scope FROM keys.suspensions"
    )
    return rows


async def held(conn: asyncpg.Connection) -> dict[str, str]:
    """Every held account → its holding reasons (`source: reason; ...`)."""
    return {r["account_id"]: r["reasons"] for r in await conn.fetch(HOLDS)}


# What the console shows


async def holds(conn: asyncpg.Connection, account_id: str) -> list[asyncpg.Record]:
    """The account's latest decision of each source that ever decided on it, in source order."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM keys.suspensions WHERE account_id = $1 ORDER BY source", account_id
    )
    return rows


async def positions(conn: asyncpg.Connection, topic: str) -> dict[int, int]:
    """The key store's next offset per partition of `topic`, as committed with its rows: read in the same
    transaction as `key_hashes` and `suspensions`, it says which records those rows already hold."""
    rows = await conn.fetch("SELECT partition, next_offset FROM keys.positions WHERE topic = $1", topic)
    return {r["partition"]: r["next_offset"] for r in rows}
