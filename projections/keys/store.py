"""Writes to the key store's tables (`keys`, `suspensions`): only its fold calls them, on its own schema."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

UPSERT_SUSPENSION = """
INSERT INTO suspensions (account_id, source, suspended, reason, cause, effective_at, sequence, until, scope)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (account_id, source) DO UPDATE SET
    suspended = EXCLUDED.suspended, reason = EXCLUDED.reason, cause = EXCLUDED.cause,
    effective_at = EXCLUDED.effective_at, sequence = EXCLUDED.sequence, until = EXCLUDED.until,
    scope = EXCLUDED.scope
WHERE suspensions.sequence < EXCLUDED.sequence
"""


async def issue(
    conn: asyncpg.Connection, key_id: str, account_id: str, prefix: str, key_hash: str, issued_at: datetime
) -> None:
    """Record an issued key, active; issuing the same key id again changes nothing."""
    await conn.execute(
        """INSERT INTO keys (key_id, account_id, prefix, key_hash, state, issued_at)
           VALUES ($1, $2, $3, $4, 'active', $5) ON CONFLICT (key_id) DO NOTHING""",
        key_id, account_id, prefix, key_hash, issued_at,
    )


async def revoke(conn: asyncpg.Connection, key_id: str, revoked_at: datetime, reason: str) -> None:
    """Revoke an active key; a revocation is final, so a revoked key keeps its first revocation."""
    await conn.execute(
        """UPDATE keys SET state = 'revoked', revoked_at = $2, revoke_reason = $3
           WHERE key_id = $1 AND state = 'active'""",
        key_id, revoked_at, reason,
    )


async def decide_suspension(
    conn: asyncpg.Connection, account_id: str, source: str, suspended: bool, reason: str, cause: str,
    effective_at: datetime, sequence: int, until: datetime | None = None, scope: Sequence[str] | None = None,
) -> None:
    """Set one source's hold on the account unless that source's decision with a higher or equal sequence is
    already kept; other sources' holds are untouched. `scope`: the API surfaces it stops (None: all)."""
    await conn.execute(UPSERT_SUSPENSION, account_id, source, suspended, reason, cause, effective_at, sequence, until,
                       list(scope) if scope is not None else None)
