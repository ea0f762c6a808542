"""Writes to the outgoing webhooks' tables: the fold's (endpoints, events, deliveries) and the sender's marks.

Every function takes a connection whose search path is the schema being written (the live one, or a replay's).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

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


async def set_contact(conn: asyncpg.Connection, account_id: str, address: str | None, at: datetime, *,
                      only_if_new: bool) -> None:
    """The account's alert address; a registration (`only_if_new`) sets it only for an account that set none yet,
    so a registration published again never undoes a later change."""
    if only_if_new:
        await conn.execute(
            """INSERT INTO contacts (account_id, contact_email, set_at) VALUES ($1, $2, $3)
               ON CONFLICT (account_id) DO NOTHING""", account_id, address, at,
        )
    else:
        await conn.execute(
            """INSERT INTO contacts (account_id, contact_email, set_at) VALUES ($1, $2, $3)
               ON CONFLICT (account_id) DO UPDATE
               SET contact_email = excluded.contact_email, set_at = excluded.set_at""",
            account_id, address, at,
        )


async def add_alert_mails(conn: asyncpg.Connection, alerts: Sequence[Happened]) -> None:
    """One mail per alert event (kept in `events` already); one already recorded is left as it is."""
    if alerts:
        await conn.execute(
            """INSERT INTO alert_mails (event_id, account_id)
               SELECT * FROM unnest($1::uuid[], $2::text[]) ON CONFLICT (event_id) DO NOTHING""",
            [h.event_id for h in alerts], [h.account_id for h in alerts],
        )


# The senders' side


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


async def claim_alert_mails(
    conn: asyncpg.Connection, limit: int, now: datetime, lease: timedelta
) -> list[asyncpg.Record]:
    """Lease up to `limit` unsent alert mails, oldest first, that no other mailer holds, with what composing them
    needs: the alert (type, time, data as sent to webhooks) and the account's contact address as folded now."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """WITH due AS (
               SELECT event_id FROM alert_mails
               WHERE sent_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $2)
               ORDER BY created_at, event_id LIMIT $1 FOR UPDATE SKIP LOCKED)
           UPDATE alert_mails AS m SET claimed_until = $2 + $3::interval
           FROM due, events AS e
           WHERE m.event_id = due.event_id AND e.event_id = m.event_id
           RETURNING m.event_id, m.account_id, m.created_at, m.attempts, e.type, e.occurred_at, e.data,
                     (SELECT c.contact_email FROM contacts AS c WHERE c.account_id = m.account_id) AS contact_email""",
        limit, now, lease,
    )
    return sorted(rows, key=lambda r: (r["created_at"], r["event_id"]))


async def alert_mail_sent(conn: asyncpg.Connection, event_id: uuid.UUID, sent_to: str) -> None:
    await conn.execute(
        """UPDATE alert_mails SET sent_at = now(), sent_to = $2, attempts = attempts + 1, last_error = NULL,
                  claimed_until = NULL WHERE event_id = $1""",
        event_id, sent_to,
    )


async def alert_mail_failed(conn: asyncpg.Connection, event_id: uuid.UUID, error: str) -> None:
    """Due again at once; the mailer backs off while mail is out of reach."""
    await conn.execute(
        "UPDATE alert_mails SET attempts = attempts + 1, last_error = $2, claimed_until = NULL WHERE event_id = $1",
        event_id, error[:500],
    )


async def known_events(conn: asyncpg.Connection, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these events the fold has kept: an alert already raised (and folded) need not be published again."""
    rows = await conn.fetch("SELECT event_id FROM events WHERE event_id = ANY($1::uuid[])", list(event_ids))
    return {r["event_id"] for r in rows}
