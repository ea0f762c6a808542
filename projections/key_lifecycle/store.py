"""The key lifecycle's tables (schema `key_lifecycle`): what its fold reads and writes, and the notifier's marks.

Every function takes a connection whose search path is the schema being written (the live one, or a replay's).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple
from uuid import UUID

import asyncpg

from projections.db import lock_each
from projections.key_lifecycle import invoices
from projections.key_lifecycle.dunning import DunningState

SAVE_CUSTOMER = """
INSERT INTO customers (customer_id, account_id, standing, reason, past_due_since, decided_at, decided_ids, suspends,
                       decided_reason, signals, clock, paid_invoices, decisions, updated_at, invoices)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::jsonb)
ON CONFLICT (customer_id) DO UPDATE SET
    account_id = EXCLUDED.account_id, standing = EXCLUDED.standing, reason = EXCLUDED.reason,
    past_due_since = EXCLUDED.past_due_since, decided_at = EXCLUDED.decided_at, decided_ids = EXCLUDED.decided_ids,
    suspends = EXCLUDED.suspends, decided_reason = EXCLUDED.decided_reason, signals = EXCLUDED.signals,
    clock = EXCLUDED.clock, paid_invoices = EXCLUDED.paid_invoices, decisions = EXCLUDED.decisions,
    updated_at = EXCLUDED.updated_at, invoices = EXCLUDED.invoices
"""

# Only a customer with no account yet takes one: a customer's account, once known, stays (as the fold keeps it).
ATTACH_ACCOUNT = """
UPDATE customers AS c SET account_id = a.account_id
FROM accounts AS a
WHERE a.account_id = $1 AND a.customer_id = $2 AND c.customer_id = a.customer_id AND c.account_id IS NULL
RETURNING c.*
"""


class Customer(NamedTuple):
    """One customer's row: the dunning state, the account it bills (if known), and its decision count."""

    state: DunningState
    account_id: str | None
    decisions: int


def customer_of(row: asyncpg.Record) -> Customer:
    state = DunningState(
        standing=row["standing"], reason=row["reason"], decided_at=row["decided_at"],
        decided_ids=frozenset(row["decided_ids"]), suspends=row["suspends"], decided_reason=row["decided_reason"],
        signals=tuple(row["signals"]), clock=row["clock"], invoices=_invoices(row["invoices"]),
    )
    return Customer(state, row["account_id"], row["decisions"])


def _invoices(stored: object) -> tuple[invoices.Invoice, ...]:
    """The `invoices` column, as text (asyncpg's default for jsonb) or already decoded; not a list: none known."""
    found = json.loads(stored) if isinstance(stored, str) else stored
    return invoices.decode([i for i in found if isinstance(i, dict)]) if isinstance(found, list) else ()


async def lock_customers(conn: asyncpg.Connection, customer_ids: Iterable[str]) -> None:
    """A customer's Stripe events and its account's link come on different topics, which two processes of the
    consumer group may fold at once; holding this lock makes "decide with no account" and "attach the account"
    happen one after the other, never both missing each other."""
    await lock_each(conn, "key-lifecycle:customer:", customer_ids)


async def customer(conn: asyncpg.Connection, customer_id: str) -> Customer | None:
    """The customer's row, locked for the rest of the transaction; None for a customer not seen yet."""
    row = await conn.fetchrow("SELECT * FROM customers WHERE customer_id = $1 FOR UPDATE", customer_id)
    return customer_of(row) if row is not None else None


async def save_customer(
    conn: asyncpg.Connection, customer_id: str, account_id: str | None, state: DunningState, decisions: int,
    at: datetime,
) -> None:
    await conn.execute(
        SAVE_CUSTOMER, customer_id, account_id, state.standing, state.reason, state.past_due_since, state.decided_at,
        sorted(state.decided_ids), state.suspends, state.decided_reason, list(state.signals), state.clock,
        list(state.paid_invoices), decisions, at, json.dumps(invoices.encode(state.invoices)),
    )


async def account_of_customer(conn: asyncpg.Connection, customer_id: str) -> str | None:
    """The account linked to this Stripe customer in the lifecycle's own view of the registry."""
    found: str | None = await conn.fetchval(
        "SELECT account_id FROM accounts WHERE customer_id = $1 ORDER BY account_id LIMIT 1", customer_id
    )
    return found


async def attach_account(conn: asyncpg.Connection, account_id: str, customer_id: str) -> Customer | None:
    """Set the account on the customer's row if the view links the two and the row has no account yet; returns
    the row so changed, or None when nothing changed."""
    row = await conn.fetchrow(ATTACH_ACCOUNT, account_id, customer_id)
    return customer_of(row) if row is not None else None


async def add_notification(
    conn: asyncpg.Connection, notification_id: UUID, account_id: str, customer_id: str, kind: str, reason: str,
    recipient: str | None,
) -> None:
    """Queue a notice for the notifier; the same notification id is queued once."""
    await conn.execute(
        """INSERT INTO notifications (notification_id, account_id, customer_id, kind, reason, recipient)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (notification_id) DO NOTHING""",
        notification_id, account_id, customer_id, kind, reason, recipient,
    )


async def claim_unsent(conn: asyncpg.Connection, limit: int, now: datetime, lease: timedelta) -> list[asyncpg.Record]:
    """Lease up to `limit` unsent notifications, oldest first, that no other notifier holds; each is sent after this
    transaction commits, and marked in a transaction of its own."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """UPDATE notifications SET claimed_until = $2 + $3::interval
           WHERE id IN (SELECT id FROM notifications
                        WHERE sent_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $2)
                        ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING *""",
        limit, now, lease,
    )
    return sorted(rows, key=lambda r: r["id"])


async def mark_sent(conn: asyncpg.Connection, notification: int) -> None:
    await conn.execute(
        """UPDATE notifications SET sent_at = now(), attempts = attempts + 1, last_error = NULL, claimed_until = NULL
           WHERE id = $1""",
        notification,
    )


async def mark_failed(conn: asyncpg.Connection, notification: int, error: str) -> None:
    await conn.execute(
        "UPDATE notifications SET attempts = attempts + 1, last_error = $2, claimed_until = NULL WHERE id = $1",
        notification, error[:500],
    )
