"""The transactional outbox: a projection emits events by writing them beside its rows.

What must be published is recorded first, in the transaction that decided it, so a crash can neither drop it
nor separate it from the state change that caused it. `services.platform.relay` publishes and marks rows sent.
Every function but `hand_over` (which names both schemas of a replay's swap) runs on the outbox of the schema
the transaction's search_path points at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from events.codec import encode
from events.envelope import Envelope, Event
from projections.db import has_table, quote_schema


async def emit(
    conn: asyncpg.Connection, events: Sequence[Event], *, producer: str, occurred_at: datetime | None = None
) -> int:
    """Queue events for publication; an event whose id is already queued is skipped. Returns how many were new."""
    if not events:
        return 0
    envelopes = [Envelope.wrap(e, producer=producer, occurred_at=occurred_at) for e in events]
    rows = await conn.fetch(
        """INSERT INTO outbox (event_id, topic, key, envelope)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
           ON CONFLICT (event_id) DO NOTHING RETURNING 1""",
        [e.event_id for e in envelopes],
        [e.topic for e in events],
        [e.partition_key() for e in events],
        [encode(e).decode() for e in envelopes],
    )
    return len(rows)


@dataclass(frozen=True)
class Unsent:
    id: int
    topic: str  # the logical topic; the relay maps it to the deployment's name
    key: str
    envelope: str


async def claim_unsent(conn: asyncpg.Connection, limit: int) -> list[Unsent]:
    """The oldest unsent rows, up to `limit`, locked for this transaction; rows another relay holds are skipped."""
    rows = await conn.fetch(
        "SELECT id, topic, key, envelope FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [Unsent(r["id"], r["topic"], r["key"], r["envelope"]) for r in rows]


async def mark_sent(conn: asyncpg.Connection, rows: Sequence[Unsent]) -> None:
    await conn.execute("UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", [r.id for r in rows])


async def hand_over(conn: asyncpg.Connection, live_schema: str, rebuild_schema: str) -> None:
    """Mark sent in the rebuild's outbox what live already published, so the relay does not publish the whole
    history again once the rebuild is swapped in. Matching is by event id, so this relies on emitted events
    having natural ids (as jobs do); what only the rebuild emitted (a fixed projection) stays unsent and goes out.
    Run it in the swap's transaction: until that ends, the live relay is kept off the rows it locks."""
    live, shadow = quote_schema(live_schema), quote_schema(rebuild_schema)
    if not await has_table(conn, f"{live}.outbox"):
        return
    # Wait for a relay batch in flight to be marked, and keep the relay off the old rows from now on
    # (it skips locked rows): no event is published twice because of the swap.
    await conn.execute(f"SELECT 1 FROM {live}.outbox WHERE sent_at IS NULL FOR UPDATE")  # noqa: S608
    await conn.execute(
        f"""UPDATE {shadow}.outbox AS s SET sent_at = l.sent_at FROM {live}.outbox AS l
            WHERE s.event_id = l.event_id AND l.sent_at IS NOT NULL AND s.sent_at IS NULL"""  # noqa: S608
    )
