"""The PAYG work tables' one writer: every write to `recharges`, `card_captures` and `notifications`.

The fold records there what its workers are to do (charge a recharge, look up a card a top-up saved, email a
customer) and how a recharge ended; the workers (`services.payg.recharger`, `services.payg.reconciler`) claim
rows under a lease and record what Stripe or the mail server answered. Every function runs in its caller's
transaction, on the tables of its search_path (`payg`, or its replay shadow).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from events.payg import RechargeCanceled, RechargeFailed, RechargeRequested

# The fold's side.


async def recharge_accounts(conn: asyncpg.Connection, recharge_ids: Sequence[str]) -> list[str]:
    """The accounts these recharges were requested for (as recorded, whatever a webhook's metadata says)."""
    if not recharge_ids:
        return []
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT DISTINCT account_id FROM recharges WHERE recharge_id = ANY($1::text[])", list(recharge_ids)
    )
    return [r["account_id"] for r in rows]


async def recharge(conn: asyncpg.Connection, recharge_id: str) -> asyncpg.Record | None:
    """The recharge, locked until the transaction ends."""
    return await conn.fetchrow("SELECT * FROM recharges WHERE recharge_id = $1 FOR UPDATE", recharge_id)


async def request_recharge(conn: asyncpg.Connection, event: RechargeRequested) -> None:
    """Record the recharge for the recharger and advance the account's count. `recorded_at` (the wall clock, the
    column's default) is when the recharger's bound starts; `idempotency_key` is replaced by each attempt's."""
    await conn.execute(
        """INSERT INTO recharges (recharge_id, account_id, seq, amount_minor, currency, customer_id,
                                  payment_method_id, idempotency_key, requested_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $1, $8)""",
        event.recharge_id, event.account_id, event.seq, event.amount_minor, event.currency, event.customer_id,
        event.payment_method_id, event.requested_at,
    )
    await conn.execute("UPDATE balances SET recharge_seq = $2 WHERE account_id = $1", event.account_id, event.seq)


async def recharge_succeeded(conn: asyncpg.Connection, recharge_id: str, payment_intent_id: str,
                             at: datetime) -> None:
    await conn.execute(
        "UPDATE recharges SET state = 'succeeded', payment_intent_id = $2, settled_at = $3 WHERE recharge_id = $1",
        recharge_id, payment_intent_id, at,
    )


async def recharge_failed(conn: asyncpg.Connection, failed: RechargeFailed) -> None:
    await conn.execute(
        """UPDATE recharges SET state = 'failed', failure_code = $2, last_error = $3,
                  payment_intent_id = coalesce($4, payment_intent_id), settled_at = $5 WHERE recharge_id = $1""",
        failed.recharge_id, failed.code, failed.message, failed.payment_intent_id, failed.failed_at,
    )


async def recharge_canceled(conn: asyncpg.Connection, canceled: RechargeCanceled) -> bool:
    """End a recharge still in flight as canceled; False when it had already ended (a success or failure wins)."""
    done = await conn.execute(
        """UPDATE recharges SET state = 'canceled', cancel_reason = $2, settled_at = $3
           WHERE recharge_id = $1 AND state = 'requested'""",
        canceled.recharge_id, canceled.reason, canceled.canceled_at,
    )
    return bool(done != "UPDATE 0")


async def notify_failure(conn: asyncpg.Connection, failed: RechargeFailed, recharge: asyncpg.Record, detail: str,
                         ) -> None:
    """Queue the failed-recharge notice for the customer: one per recharge."""
    await conn.execute(
        """INSERT INTO notifications (notification_id, account_id, kind, recharge_id, amount_minor, currency,
                                      detail, created_at)
           VALUES ($1, $2, 'recharge_failed', $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        f"recharge-failed:{failed.recharge_id}", recharge["account_id"], failed.recharge_id,
        recharge["amount_minor"], recharge["currency"], detail, failed.failed_at,
    )


async def request_card_capture(
    conn: asyncpg.Connection, account_id: str, payment_intent_id: str, session_id: str, customer_id: str | None,
    now: datetime,
) -> None:
    """Record that the card saved by this top-up's PaymentIntent is to be looked up (once per PaymentIntent)."""
    await conn.execute(
        """INSERT INTO card_captures (payment_intent_id, account_id, session_id, customer_id, requested_at)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (payment_intent_id) DO NOTHING""",
        payment_intent_id, account_id, session_id, customer_id, now,
    )


async def card_saved(conn: asyncpg.Connection, payment_intent_id: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE card_captures SET saved_at = $2 WHERE payment_intent_id = $1 AND saved_at IS NULL",
        payment_intent_id, now,
    )


# The workers' side: claims under a lease, and what came of them.

# Every claim is a new attempt, with its own idempotency key (`events.payg.recharge_attempt_key`).
CLAIM_DUE = """
UPDATE recharges SET claimed_until = $2, attempts = attempts + 1,
                     idempotency_key = recharge_id || ':' || (attempts + 1)
WHERE recharge_id IN (
    SELECT recharge_id FROM recharges
    WHERE state = 'requested' AND sent_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $1)
    ORDER BY recorded_at LIMIT $3 FOR UPDATE SKIP LOCKED
)
RETURNING *
"""


async def claim_due_recharges(conn: asyncpg.Connection, now: datetime, lease_until: datetime,
                              limit: int) -> list[asyncpg.Record]:
    """Lease unsent recharges, however old: the recharger ends each (sent, failed or canceled) within its bound."""
    rows: list[asyncpg.Record] = await conn.fetch(CLAIM_DUE, now, lease_until, limit)
    return rows


async def recharge_sent(conn: asyncpg.Connection, recharge_id: str, payment_intent_id: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE recharges SET payment_intent_id = $2, sent_at = $3, last_error = NULL WHERE recharge_id = $1",
        recharge_id, payment_intent_id, at,
    )


async def recharge_declined(conn: asyncpg.Connection, failed: RechargeFailed) -> None:
    """The charge was refused: sent, never to be sent again; the fold settles it when the `RechargeFailed` comes."""
    await conn.execute(
        """UPDATE recharges SET sent_at = $2, failure_code = $3, last_error = $4,
                  payment_intent_id = coalesce($5, payment_intent_id) WHERE recharge_id = $1""",
        failed.recharge_id, failed.failed_at, failed.code, failed.message, failed.payment_intent_id,
    )


async def recharge_ended_unsent(conn: asyncpg.Connection, recharge_id: str, at: datetime, why: str) -> None:
    """Never to be sent (canceled): out of the recharger's and reconciler's way until the fold settles it."""
    await conn.execute(
        "UPDATE recharges SET sent_at = $2, last_error = $3 WHERE recharge_id = $1 AND sent_at IS NULL",
        recharge_id, at, why[:1000],
    )


async def postpone_recharge(conn: asyncpg.Connection, recharge_id: str, until: datetime, error: str) -> None:
    await conn.execute(
        "UPDATE recharges SET claimed_until = $2, last_error = $3 WHERE recharge_id = $1", recharge_id, until, error,
    )


# `checked_at` is both the lease and the pace: a recharge is asked about at most once per `settle_after`.
CLAIM_UNSETTLED = """
UPDATE recharges SET checked_at = $1
WHERE recharge_id IN (
    SELECT recharge_id FROM recharges
    WHERE state = 'requested' AND payment_intent_id IS NOT NULL AND failure_code IS NULL AND sent_at <= $2
      AND (checked_at IS NULL OR checked_at <= $2)
    ORDER BY sent_at LIMIT $3 FOR UPDATE SKIP LOCKED
)
RETURNING *
"""


async def claim_unsettled(conn: asyncpg.Connection, now: datetime, sent_before: datetime,
                          limit: int) -> list[asyncpg.Record]:
    """Claim sent recharges still unsettled, sent (and last asked about) before `sent_before`."""
    rows: list[asyncpg.Record] = await conn.fetch(CLAIM_UNSETTLED, now, sent_before, limit)
    return rows


CLAIM_CAPTURES = """
UPDATE card_captures SET claimed_until = $2, attempts = attempts + 1
WHERE payment_intent_id IN (
    SELECT payment_intent_id FROM card_captures
    WHERE sent_at IS NULL AND saved_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $1)
    ORDER BY requested_at LIMIT $3 FOR UPDATE SKIP LOCKED
)
RETURNING *
"""


async def claim_card_captures(conn: asyncpg.Connection, now: datetime, lease_until: datetime,
                              limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(CLAIM_CAPTURES, now, lease_until, limit)
    return rows


async def card_capture_done(conn: asyncpg.Connection, payment_intent_id: str, at: datetime, card: str | None,
                            error: str | None) -> None:
    """The lookup is over: the card found (published in the same transaction), or why there is none."""
    await conn.execute(
        "UPDATE card_captures SET sent_at = $2, payment_method_id = $3, last_error = $4 WHERE payment_intent_id = $1",
        payment_intent_id, at, card, error,
    )


async def postpone_card_capture(conn: asyncpg.Connection, payment_intent_id: str, until: datetime,
                                error: str) -> None:
    await conn.execute(
        "UPDATE card_captures SET claimed_until = $2, last_error = $3 WHERE payment_intent_id = $1",
        payment_intent_id, until, error,
    )


async def claim_unsent_notifications(
    conn: asyncpg.Connection, limit: int, now: datetime, lease: timedelta
) -> list[asyncpg.Record]:
    """Lease the oldest unsent notices no other recharger holds; each is sent after this transaction commits, and
    marked in a transaction of its own."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """UPDATE notifications SET claimed_until = $2 + $3::interval
           WHERE notification_id IN (SELECT notification_id FROM notifications
                                     WHERE sent_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $2)
                                     ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING *""",
        limit, now, lease,
    )
    return sorted(rows, key=lambda r: r["created_at"])


async def notification_unsent(conn: asyncpg.Connection, notification_id: str) -> None:
    """The send failed: free the notice for the next pass."""
    await conn.execute("UPDATE notifications SET claimed_until = NULL WHERE notification_id = $1", notification_id)


async def notification_sent(conn: asyncpg.Connection, notification_id: str, pay_url: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE notifications SET pay_url = $2, sent_at = $3, claimed_until = NULL WHERE notification_id = $1",
        notification_id, pay_url, at,
    )
