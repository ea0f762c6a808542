"""Reads of the account registry's tables: the one place outside its fold that queries `accounts.accounts`.

Every function takes a connection, so a caller can read inside a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg


async def account(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM accounts.accounts WHERE account_id = $1", account_id)


async def accounts(conn: asyncpg.Connection, model: str | None = None) -> list[asyncpg.Record]:
    """Every account (of one billing model, when given), by id."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM accounts.accounts WHERE $1::text IS NULL OR model = $1 ORDER BY account_id", model
    )
    return rows


async def known(conn: asyncpg.Connection, account_ids: Iterable[str]) -> set[str]:
    """Which of these accounts the registry knows."""
    rows = await conn.fetch(
        "SELECT account_id FROM accounts.accounts WHERE account_id = ANY($1::text[])", list(account_ids)
    )
    return {r["account_id"] for r in rows}


async def account_of_customer(conn: asyncpg.Connection, customer_id: str) -> str | None:
    """The account a Stripe customer belongs to, if one is linked."""
    found: str | None = await conn.fetchval(
        "SELECT account_id FROM accounts.accounts WHERE stripe_customer_id = $1", customer_id
    )
    return found


async def models(conn: asyncpg.Connection) -> dict[str, str]:
    """Each account's billing model."""
    return {r["account_id"]: r["model"] for r in await conn.fetch("SELECT account_id, model FROM accounts.accounts")}


async def count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM accounts.accounts"))


async def positions(conn: asyncpg.Connection, topic: str) -> dict[int, int]:
    """The registry's next offset per partition of `topic`, as committed with its rows: read in the same
    transaction as `models`, it says which records those rows already hold."""
    rows = await conn.fetch("SELECT partition, next_offset FROM accounts.positions WHERE topic = $1", topic)
    return {r["partition"]: r["next_offset"] for r in rows}


async def profiles(conn: asyncpg.Connection, account_ids: Iterable[str]) -> list[asyncpg.Record]:
    """How each of these accounts is billed and where its mail goes (account_id, model, contact_email)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT account_id, model, contact_email FROM accounts.accounts WHERE account_id = ANY($1::text[])",
        list(account_ids),
    )
    return rows
