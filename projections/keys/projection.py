"""The key store: keys and account suspensions, folded from the `keys` topic.

Per-account order holds on the topic (keyed by account), and the fold is idempotent besides: an issue is
recorded once, a revocation is final, and a suspension or restoration only replaces an older decision of the
same source (dunning, PAYG, a cap): each source's hold is its own row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import asyncpg

from events.envelope import Event
from events.keys import KeyIssued, KeyRestored, KeyRevoked, KeySuspended
from projections.keys import store
from projections.projection import Projection
from projections.records import Recorded


class KeyStore(Projection):
    name = "keys"
    schema = "keys"
    topics = ("keys",)
    migrations = Path(__file__).parent / "migrations"
    tables = ("keys", "suspensions")

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        # Key changes are rare; folding in log order keeps issue-then-revoke straightforward.
        for item in events:
            event = item.event
            if isinstance(event, KeyIssued):
                await store.issue(conn, event.key_id, event.account_id, event.prefix, event.key_hash, event.issued_at)
            elif isinstance(event, KeyRevoked):
                await store.revoke(conn, event.key_id, event.revoked_at, event.reason)
            elif isinstance(event, KeySuspended | KeyRestored):
                await store.decide_suspension(
                    conn, event.account_id, event.source, isinstance(event, KeySuspended), event.reason,
                    event.cause, event.effective_at, event.sequence,
                    event.until if isinstance(event, KeySuspended) else None,
                    event.scope if isinstance(event, KeySuspended) else None,
                )
