"""The refunds and disputes the fold parks until the payment they reverse credits a balance
(`projections.payg.reversals`): `parked_reversals`, written inside the fold's transaction on the `payg` schema (or
its replay shadow)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg

from projections.db import lock_each


class Parked(NamedTuple):
    key: str
    payment_intent_id: str
    envelope: str  # the StripeEventReceived as it was logged
    logged_at: datetime


async def lock_payments(conn: asyncpg.Connection, payment_intent_ids: Iterable[str]) -> None:
    """Hold these payments until the transaction ends: a fold that credits one and a fold that parks its refund
    (two consumers, two partitions) go one after the other, so the second always sees what the first did; never
    both missing each other, which would leave the refund parked for ever."""
    ids = set(payment_intent_ids)
    if ids:  # most batches are jobs only: no round trip for them
        await lock_each(conn, "payg:payment:", ids)


async def park(conn: asyncpg.Connection, parked: Sequence[Parked]) -> int:
    """Park these (each key once, duplicates in the batch included); returns how many were new."""
    if not parked:
        return 0
    rows = await conn.fetch(
        """INSERT INTO parked_reversals (parked_key, payment_intent_id, envelope, logged_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
           ON CONFLICT (parked_key) DO NOTHING RETURNING 1""",
        *(list(column) for column in zip(*parked, strict=True)),
    )
    return len(rows)


async def parked_for(conn: asyncpg.Connection, payment_intent_ids: Iterable[str]) -> list[Parked]:
    """What waits for these payments, in the order it was parked."""
    ids = sorted(set(payment_intent_ids))
    if not ids:
        return []
    rows = await conn.fetch(
        """SELECT parked_key, payment_intent_id, envelope, logged_at FROM parked_reversals
           WHERE payment_intent_id = ANY($1::text[]) ORDER BY seq""", ids,
    )
    return [Parked(*r) for r in rows]


async def release(conn: asyncpg.Connection, keys: Sequence[str]) -> None:
    if keys:
        await conn.execute("DELETE FROM parked_reversals WHERE parked_key = ANY($1::text[])", list(keys))
