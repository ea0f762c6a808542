"""The key store: keys and account suspensions, folded from the `keys` topic.

Per-account order holds on the topic (keyed by account), and the fold is idempotent besides: an issue is
recorded once, a revocation is final, and a suspension or restoration only replaces an older decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import asyncpg

from events.envelope import Event
from events.keys import KeyIssued, KeyRestored, KeyRevoked, KeySuspended
from projections.projection import Projection
from projections.records import Recorded

UPSERT_SUSPENSION = """
INSERT INTO suspensions (account_id, suspended, reason, cause, effective_at, sequence)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (account_id) DO UPDATE SET
    suspended = EXCLUDED.suspended, reason = EXCLUDED.reason, cause = EXCLUDED.cause,
    effective_at = EXCLUDED.effective_at, sequence = EXCLUDED.sequence
WHERE suspensions.sequence < EXCLUDED.sequence
"""


class KeyStore(Projection):
    name = "keys"
    schema = "keys"
    topics = ("keys",)
    migrations = Path(__file__).parent / "store_migrations"
    tables = ("keys", "suspensions")

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        # Key changes are rare; folding in log order keeps issue-then-revoke straightforward.
        for item in events:
            event = item.event
            if isinstance(event, KeyIssued):
                await conn.execute(
                    """INSERT INTO keys (key_id, account_id, prefix, key_hash, state, issued_at)
                       VALUES ($1, $2, $3, $4, 'active', $5) ON CONFLICT (key_id) DO NOTHING""",
                    event.key_id, event.account_id, event.prefix, event.key_hash, event.issued_at,
                )
            elif isinstance(event, KeyRevoked):
                await conn.execute(
                    """UPDATE keys SET state = 'revoked', revoked_at = $2, revoke_reason = $3
                       WHERE key_id = $1 AND state = 'active'""",
                    event.key_id, event.revoked_at, event.reason,
                )
            elif isinstance(event, KeySuspended | KeyRestored):
                await conn.execute(
                    UPSERT_SUSPENSION, event.account_id, isinstance(event, KeySuspended), event.reason,
                    event.cause, event.effective_at, event.sequence,
                )
