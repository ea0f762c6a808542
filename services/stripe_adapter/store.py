"""The Stripe webhook log (`webhooks.log`): each event Kafka has acknowledged, with its body, once per event id.

Not a projection: the bridge writes a row after the publish, and the retention worker prunes old ones. This
module is the one place that holds their SQL; every function takes a connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import asyncpg

from events.stripe import StripeEventReceived

SCHEMA = "webhooks"
MIGRATIONS = Path(__file__).parent / "webhook_migrations"
TABLE = "webhooks.log"


async def lock_event(conn: asyncpg.Connection, stripe_event_id: str) -> None:
    """Hold the event's lock for the rest of the transaction: racing copies of one delivery go one at a time."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('stripe-webhook:' || $1))", stripe_event_id)


async def count_redelivery(conn: asyncpg.Connection, stripe_event_id: str) -> bool:
    """Count one more delivery of a logged event; False when the event is not in the log."""
    status: str = await conn.execute(
        "UPDATE webhooks.log SET deliveries = deliveries + 1 WHERE stripe_event_id = $1", stripe_event_id
    )
    return status != "UPDATE 0"


async def log_event(conn: asyncpg.Connection, event: StripeEventReceived, body: bytes) -> None:
    """Record an event as on the bus, with the body it was delivered with."""
    await conn.execute(
        """INSERT INTO webhooks.log (stripe_event_id, type, customer_id, account_id, created, livemode, body)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        event.stripe_event_id, event.type, event.customer_id, event.account_id, event.created,
        event.livemode, body.decode(),
    )


async def prune(conn: asyncpg.Connection, before: datetime, limit: int) -> int:
    """Delete up to `limit` log rows received before `before` (a chunk: no long transaction); returns how many."""
    status = await conn.execute(
        """DELETE FROM webhooks.log WHERE ctid = ANY(ARRAY(
               SELECT ctid FROM webhooks.log WHERE received_at < $1 LIMIT $2))""",
        before, limit,
    )
    return int(status.split()[-1])


# What the console shows


async def latest(
    conn: asyncpg.Connection, limit: int, account_id: str | None, *, simulated_prefixes: Sequence[str]
) -> list[asyncpg.Record]:
    """The latest logged events (of one account, when given), newest first; `simulated` marks those whose id
    starts with one of `simulated_prefixes`."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT stripe_event_id, type, customer_id, account_id, created, received_at, deliveries,
                  stripe_event_id ^@ ANY($3::text[]) AS simulated
           FROM webhooks.log WHERE $2::text IS NULL OR account_id = $2 ORDER BY received_at DESC LIMIT $1""",
        limit, account_id, list(simulated_prefixes),
    )
    return rows
