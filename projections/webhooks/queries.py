"""Reads of the outgoing webhooks' tables (schema `outgoing_webhooks`): the one place outside its fold and sender
that queries them. Every function takes a connection, so a caller can read inside a transaction of its own."""

from __future__ import annotations

from datetime import datetime

import asyncpg

SCHEMA = "outgoing_webhooks"

DELIVERY_COLUMNS = """d.delivery_id, d.account_id, d.endpoint_id, e.url, d.type, d.state, d.attempts, d.last_status,
d.last_error, d.created_at, d.last_attempt_at, d.next_attempt_at, d.delivered_at"""


async def endpoints(conn: asyncpg.Connection, account_id: str) -> list[asyncpg.Record]:
    """The account's endpoints, removed ones included, in the order they were added."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT endpoint_id, account_id, url, event_types, added_at, removed_at
           FROM outgoing_webhooks.endpoints WHERE account_id = $1 ORDER BY added_at, endpoint_id""", account_id,
    )
    return rows


async def endpoint(conn: asyncpg.Connection, endpoint_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM outgoing_webhooks.endpoints WHERE endpoint_id = $1", endpoint_id
    )
    return row


async def deliveries(conn: asyncpg.Connection, account_id: str, limit: int = 100) -> list[asyncpg.Record]:
    """The account's latest deliveries, newest first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT {DELIVERY_COLUMNS} FROM outgoing_webhooks.deliveries AS d
            JOIN outgoing_webhooks.endpoints AS e USING (endpoint_id)
            WHERE d.account_id = $1 ORDER BY d.created_at DESC, d.delivery_id LIMIT $2""",  # noqa: S608
        account_id, limit,
    )
    return rows


async def failing(conn: asyncpg.Connection, created_before: datetime) -> list[asyncpg.Record]:
    """Deliveries given up on, and those created before `created_before` that are still being retried after a failed
    attempt: what the doctor lists."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT {DELIVERY_COLUMNS} FROM outgoing_webhooks.deliveries AS d
            JOIN outgoing_webhooks.endpoints AS e USING (endpoint_id)
            WHERE d.state = 'failed' OR (d.state = 'pending' AND d.attempts > 0 AND d.created_at < $1)
            ORDER BY d.created_at""",  # noqa: S608
        created_before,
    )
    return rows


async def alert_mails(conn: asyncpg.Connection, account_id: str, limit: int = 100) -> list[asyncpg.Record]:
    """The account's alert emails, newest first: which alert, to whom and when it went (null: not yet)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT m.event_id, m.account_id, e.type, e.occurred_at, m.sent_to, m.sent_at, m.attempts, m.last_error
           FROM outgoing_webhooks.alert_mails AS m JOIN outgoing_webhooks.events AS e USING (event_id)
           WHERE m.account_id = $1 ORDER BY m.created_at DESC, m.event_id LIMIT $2""",
        account_id, limit,
    )
    return rows


async def unsent_alert_mails(conn: asyncpg.Connection, created_before: datetime) -> list[asyncpg.Record]:
    """Alert emails recorded before `created_before` and still not sent (failing, or never tried), with where they
    would go now: what the doctor lists."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT m.event_id, m.account_id, e.type, m.created_at, m.attempts, m.last_error, c.contact_email
           FROM outgoing_webhooks.alert_mails AS m JOIN outgoing_webhooks.events AS e USING (event_id)
           LEFT JOIN outgoing_webhooks.contacts AS c ON c.account_id = m.account_id
           WHERE m.sent_at IS NULL AND m.created_at < $1 ORDER BY m.created_at, m.event_id""",
        created_before,
    )
    return rows
