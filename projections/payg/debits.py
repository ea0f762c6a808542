"""The jobs' debits: nearly every movement a PAYG balance has, written the fast way (`store.add_movements` writes
the others)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from projections.columns import micros
from projections.first_seen import Unchecked
from projections.payg.store import Charge

# store.ADD_MOVEMENTS for the jobs' debits, nearly every movement there is: each column as one text
# (projections.columns), which a job's identifiers allow (no space in its API name or id), where a refund's reference
# from Stripe might not.
ADD_DEBITS = Unchecked.of("""
WITH new AS (
    INSERT INTO movements (movement_id, account_id, kind, amount_minor, reference, at, event_id)
    SELECT movement_id, account_id, 'debit', -price, reference, timestamptz 'epoch' + us * interval '1 microsecond',
           event_id
    FROM unnest(string_to_array($1, ' '), string_to_array($2, ' '), string_to_array($3, ' ')::int8[],
                string_to_array($4, ' '), string_to_array($5, ' ')::int8[], string_to_array($6, ' ')::uuid[])
        AS debit(movement_id, account_id, price, reference, us, event_id)
    ON CONFLICT (movement_id) DO NOTHING
    RETURNING movement_id, account_id, amount_minor
), sums AS (
    SELECT account_id, sum(amount_minor) AS amount FROM new GROUP BY account_id
), moved AS (
    UPDATE balances AS b SET balance_minor = b.balance_minor + sums.amount, updated_at = $7
    FROM sums WHERE b.account_id = sums.account_id
)
SELECT movement_id FROM new
""", "ON CONFLICT (movement_id) DO NOTHING")


def debit_id(job: Charge) -> str:
    """A job's debit is recorded once: its movement's id is the job's identity."""
    return f"job:{job.api}:{job.job_id}"


async def add_debits(conn: asyncpg.Connection, jobs: Sequence[Charge], prices: Sequence[int],
                     now: datetime) -> list[tuple[Charge, int]]:
    """Debit each job its price, once (`debit_id`, referencing `api:job_id`, at its completion), moving the balances
    in the same statement; returns the jobs debited now with their prices (a job twice in `jobs`: once)."""
    if not jobs:
        return []
    ids = [debit_id(j) for j in jobs]
    join = " ".join
    rows = await conn.fetch(
        ADD_DEBITS.sql, join(ids), join([j.account_id for j in jobs]), join(map(str, prices)),
        join([f"{j.api}:{j.job_id}" for j in jobs]), micros([j.completed_at for j in jobs]),
        join([j.event_id for j in jobs]), now,
    )
    new = {r["movement_id"] for r in rows}
    debited: list[tuple[Charge, int]] = []
    for job, price, debit in zip(jobs, prices, ids, strict=True):
        if debit in new:
            new.discard(debit)
            debited.append((job, price))
    return debited
