"""The transactional outbox: a projection emits events by writing them beside its rows.

What must be published is recorded first, in the transaction that decided it, so a crash can neither drop it
nor separate it from the state change that caused it. `services.platform.relay` publishes and marks rows sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from events.codec import encode
from events.envelope import Envelope, Event


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
