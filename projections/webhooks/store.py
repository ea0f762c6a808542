"""Writes to the outgoing webhooks' tables: the fold's (endpoints, events, deliveries) and the sender's marks.

Every function takes a connection whose search path is the schema being written (the live one, or a replay's).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from events.webhooks import WebhookEndpointAdded
from projections.webhooks.types import Delivery, Endpoint, Happened


async def add_endpoint(conn: asyncpg.Connection, e: WebhookEndpointAdded) -> None:
    await conn.execute(
        """INSERT INTO endpoints (endpoint_id, account_id, url, event_types, added_at)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (endpoint_id) DO NOTHING""",
        e.endpoint_id, e.account_id, e.url, list(e.event_types), e.added_at,
    )


async def remove_endpoint(conn: asyncpg.Connection, endpoint_id: str, removed_at: datetime) -> None:
    """Final: the first removal stands, and what was still being retried is cancelled."""
    await conn.execute("UPDATE endpoints SET removed_at = $2 WHERE endpoint_id = $1 AND removed_at IS NULL",
                       endpoint_id, removed_at)
    await conn.execute(
        """UPDATE deliveries SET state = 'cancelled', next_attempt_at = NULL
           WHERE endpoint_id = $1 AND state = 'pending'""", endpoint_id,
    )


async def keep_events(conn: asyncpg.Connection, happened: Sequence[Happened]) -> None:
    if not happened:
        return
    await conn.execute(
        """INSERT INTO events (event_id, account_id, type, occurred_at, data)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
           ON CONFLICT (event_id) DO NOTHING""",
        [h.event_id for h in happened], [h.account_id for h in happened], [h.kind for h in happened],
        [h.occurred_at for h in happened], [json.dumps(h.data) for h in happened],
    )


async def endpoints_of(conn: asyncpg.Connection, accounts: Sequence[str]) -> list[Endpoint]:
    rows = await conn.fetch(
        "SELECT * FROM endpoints WHERE account_id = ANY($1::text[]) ORDER BY endpoint_id", list(accounts)
    )
    return [Endpoint(r["endpoint_id"], r["account_id"], tuple(r["event_types"]), r["added_at"], r["removed_at"])
            for r in rows]


async def events_for(conn: asyncpg.Connection, endpoints: Sequence[Endpoint]) -> list[Happened]:
    """The kept events an endpoint among these may have to receive: its account's, from its addition on."""
    if not endpoints:
        return []
    rows = await conn.fetch(
        """SELECT e.* FROM events AS e
           JOIN unnest($1::text[], $2::timestamptz[]) AS p(account_id, added_at) USING (account_id)
           WHERE e.occurred_at >= p.added_at""",
        [e.account_id for e in endpoints], [e.added_at for e in endpoints],
    )
    return [Happened(r["event_id"], r["account_id"], r["type"], r["occurred_at"], json.loads(r["data"]))
            for r in {r["event_id"]: r for r in rows}.values()]


async def add_deliveries(conn: asyncpg.Connection, deliveries: Sequence[Delivery], now: datetime) -> int:
    """Record deliveries, due now; one already recorded (a refold, a replayed event) is left as it is."""
    if not deliveries:
        return 0
    rows = await conn.fetch(
        """INSERT INTO deliveries (delivery_id, event_id, endpoint_id, account_id, type, body, state, next_attempt_at,
                                   created_at)
           SELECT d, e, p, a, t, b, CASE WHEN c THEN 'cancelled' ELSE 'pending' END,
                  CASE WHEN c THEN NULL ELSE $8::timestamptz END, $8::timestamptz
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[])
                AS x(d, e, p, a, t, b, c)
           ON CONFLICT (delivery_id) DO NOTHING RETURNING 1""",
        [d.delivery_id for d in deliveries], [d.event_id for d in deliveries], [d.endpoint_id for d in deliveries],
        [d.account_id for d in deliveries], [d.kind for d in deliveries], [d.body for d in deliveries],
        [d.cancelled for d in deliveries], now,
    )
    return len(rows)


# The sender's side


async def claim_due(conn: asyncpg.Connection, now: datetime, limit: int, lease_until: datetime) -> list[asyncpg.Record]:
    """Up to `limit` pending deliveries due by `now`, oldest due first, leased until `lease_until`: a sender that
    dies mid-send leaves them due again then, to be sent under the same id."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """WITH due AS (
               SELECT delivery_id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $1
               ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           UPDATE deliveries AS d SET next_attempt_at = $3
           FROM due, endpoints AS e
           WHERE d.delivery_id = due.delivery_id AND e.endpoint_id = d.endpoint_id
           RETURNING d.delivery_id, d.endpoint_id, d.account_id, d.body, d.attempts, e.url""",
        now, limit, lease_until,
    )
    return rows


async def delivered(conn: asyncpg.Connection, delivery: uuid.UUID, status: int, at: datetime) -> None:
    await conn.execute(
        """UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, last_status = $2, last_error = NULL,
                  last_attempt_at = $3, delivered_at = $3, next_attempt_at = NULL
           WHERE delivery_id = $1 AND delivered_at IS NULL""",
        delivery, status, at,
    )


async def attempt_failed(conn: asyncpg.Connection, delivery: uuid.UUID, status: int | None, error: str, at: datetime,
                         retry_at: datetime | None) -> None:
    """Count a failed attempt; due again at `retry_at`, or given up (`failed`) when None. A delivery cancelled
    meanwhile stays cancelled."""
    await conn.execute(
        """UPDATE deliveries SET attempts = attempts + 1, last_status = $2, last_error = $3, last_attempt_at = $4,
                  next_attempt_at = $5, state = CASE WHEN $5::timestamptz IS NULL THEN 'failed' ELSE 'pending' END
           WHERE delivery_id = $1 AND state = 'pending'""",
        delivery, status, error[:500], at, retry_at,
    )
