"""The PAYG tables as the fold writes them: balances, movements (the dedupe of every debit and credit), and the
jobs and top-ups parked until their account is registered. (`recharges`, `card_captures` and `notifications`, the
tables the fold shares with its workers, are written in `projections.payg.recharge_store`.)

Every function runs inside the fold's transaction, on the `payg` schema (or its replay shadow).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

import asyncpg

from events.payg import PaygCardSaved, PaygConfigured
from projections.payg.rules import auto_recharge_once_card_saved


@dataclass(frozen=True)
class Defaults:
    """What an account's balance starts with before anyone configured it."""

    currency: str
    threshold_minor: int
    recharge_minor: int


@dataclass(frozen=True)
class Movement:
    movement_id: str  # the identity of the cause: a movement is recorded once
    account_id: str
    kind: Literal["debit", "topup", "recharge", "refund", "dispute"]
    amount_minor: int  # signed: debits are negative
    reference: str
    at: datetime
    event_id: uuid.UUID
    payment_intent_id: str | None = None  # what paid a top-up or a recharge, for its refunds and disputes


class Charge(NamedTuple):
    """A job to debit, from the log or from `parked_jobs`."""

    account_id: str
    api: str
    job_id: str
    completed_at: datetime
    event_id: str  # the job's event id as 32 hex digits (events.jobs.job_fact_hex)


async def park_jobs(conn: asyncpg.Connection, jobs: Sequence[Charge]) -> None:
    if jobs:
        await conn.execute(
            """INSERT INTO parked_jobs (account_id, api, job_id, completed_at, event_id)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::uuid[])
               ON CONFLICT (api, job_id) DO NOTHING""",
            *(list(column) for column in zip(*jobs, strict=True)),
        )


async def release_parked(conn: asyncpg.Connection, account_ids: Sequence[str]) -> list[Charge]:
    """Take the parked jobs of these (now registered) accounts out of `parked_jobs`."""
    if not account_ids:
        return []
    rows = await conn.fetch(
        """DELETE FROM parked_jobs WHERE account_id = ANY($1::text[])
           RETURNING account_id, api, job_id, completed_at, event_id""",
        sorted(account_ids),
    )
    return sorted(Charge(r["account_id"], r["api"], r["job_id"], r["completed_at"], r["event_id"].hex) for r in rows)


async def park_topups(conn: asyncpg.Connection, topups: Sequence[tuple[str, str, str]]) -> None:
    """(session id, account id, envelope JSON) of top-ups whose account is not registered yet."""
    if topups:
        await conn.execute(
            """INSERT INTO parked_topups (session_id, account_id, envelope)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT (session_id) DO NOTHING""",
            *(list(column) for column in zip(*topups, strict=True)),
        )


async def release_topups(conn: asyncpg.Connection, account_ids: Sequence[str]) -> list[str]:
    """Take the parked top-ups of these (now registered) accounts out; their envelopes, by session id."""
    if not account_ids:
        return []
    rows = await conn.fetch(
        """DELETE FROM parked_topups WHERE account_id = ANY($1::text[]) AND refused_at IS NULL
           RETURNING session_id, envelope""",
        sorted(account_ids),
    )
    return [r["envelope"] for r in sorted(rows, key=lambda r: r["session_id"])]


async def refuse_topup(conn: asyncpg.Connection, session_id: str, account_id: str, envelope: str,
                       now: datetime) -> None:
    await conn.execute(
        "INSERT INTO parked_topups (session_id, account_id, envelope, refused_at) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (session_id) DO UPDATE SET refused_at = EXCLUDED.refused_at",
        session_id, account_id, envelope, now,
    )


async def open_balances(
    conn: asyncpg.Connection, accounts: dict[str, str | None], defaults: Defaults, now: datetime
) -> None:
    """Create missing balances, then lock them all in one order (no deadlock between consumers): one statement.
    The lock sees the statement's snapshot, so it leaves out the rows created in it (ours, locked as we inserted
    them) and any another transaction committed since it began; there is none, because the fold already holds the
    account's lock (`lock_accounts`) and only a fold creates balances."""
    if not accounts:
        return
    ids = sorted(accounts)
    await conn.execute(
        """WITH created AS (
               INSERT INTO balances (account_id, currency, threshold_minor, recharge_minor, customer_id, updated_at)
               SELECT a, $3, $4, $5, c, $6 FROM unnest($1::text[], $2::text[]) AS u(a, c)
               ON CONFLICT (account_id) DO NOTHING
           )
           SELECT 1 FROM balances WHERE account_id = ANY($1::text[]) ORDER BY account_id FOR UPDATE""",
        ids, [accounts[a] for a in ids], defaults.currency, defaults.threshold_minor, defaults.recharge_minor, now,
    )


async def configure(conn: asyncpg.Connection, event: PaygConfigured, now: datetime) -> None:
    """The latest configuration wins; a customer or card left out keeps the one on file. Turning auto-recharge
    on starts the failure count afresh."""
    await conn.execute(
        """UPDATE balances SET threshold_minor = $2, recharge_minor = $3, auto_recharge = $4,
                  customer_id = coalesce($5, customer_id), payment_method_id = coalesce($6, payment_method_id),
                  failures = CASE WHEN $4 THEN 0 ELSE failures END,
                  backoff_until = CASE WHEN $4 THEN NULL ELSE backoff_until END, updated_at = $7,
                  configured_at = $7
           WHERE account_id = $1""",
        event.account_id, event.threshold_minor, event.recharge_minor, event.auto_recharge, event.customer_id,
        event.payment_method_id, now,
    )


ADD_MOVEMENTS = """
WITH new AS (
    INSERT INTO movements (movement_id, account_id, kind, amount_minor, reference, at, event_id, payment_intent_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[],
                         $7::uuid[], $9::text[])
    ON CONFLICT (movement_id) DO NOTHING
    RETURNING movement_id, account_id, amount_minor
), sums AS (
    SELECT account_id, sum(amount_minor) AS amount FROM new GROUP BY account_id
), moved AS (
    UPDATE balances AS b SET balance_minor = b.balance_minor + sums.amount, updated_at = $8
    FROM sums WHERE b.account_id = sums.account_id
)
SELECT movement_id FROM new
"""


async def add_movements(conn: asyncpg.Connection, movements: Sequence[Movement], now: datetime) -> set[str]:
    """Record movements not seen before (duplicates in the batch included) and move the balances by them;
    returns the ids of those recorded now."""
    if not movements:
        return set()
    columns: list[list[Any]] = [[] for _ in range(8)]
    for m in movements:
        values = (m.movement_id, m.account_id, m.kind, m.amount_minor, m.reference, m.at, m.event_id,
                  m.payment_intent_id)
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    rows = await conn.fetch(ADD_MOVEMENTS, *columns[:7], now, columns[7])
    return {r["movement_id"] for r in rows}


class Credited(NamedTuple):
    """A payment that credited a balance: a top-up or a recharge."""

    account_id: str
    amount_minor: int


async def credited_payments(conn: asyncpg.Connection, payment_intent_ids: Iterable[str]) -> dict[str, Credited]:
    """The top-ups and recharges these PaymentIntents paid, by PaymentIntent; a payment that credited no balance is
    not there."""
    ids = sorted(set(payment_intent_ids))
    if not ids:
        return {}
    rows = await conn.fetch(
        """SELECT payment_intent_id, account_id, amount_minor FROM movements
           WHERE payment_intent_id = ANY($1::text[]) AND kind IN ('topup', 'recharge')""", ids,
    )
    return {r["payment_intent_id"]: Credited(r["account_id"], r["amount_minor"]) for r in rows}


async def refunded(conn: asyncpg.Connection, charge_id: str) -> int:
    """What the charge's refunds debited so far (positive)."""
    return int(await conn.fetchval(
        "SELECT coalesce(-sum(amount_minor), 0) FROM movements WHERE kind = 'refund' AND reference = $1", charge_id
    ))


async def disputed(conn: asyncpg.Connection, dispute_id: str) -> int | None:
    """What the dispute debited (positive), None before it did."""
    amount = await conn.fetchval("SELECT amount_minor FROM movements WHERE movement_id = $1", f"dispute:{dispute_id}")
    return None if amount is None else -int(amount)


async def set_customer_if_missing(conn: asyncpg.Connection, account_id: str, customer_id: str | None) -> None:
    if customer_id:
        await conn.execute(
            "UPDATE balances SET customer_id = $2 WHERE account_id = $1 AND customer_id IS NULL",
            account_id, customer_id,
        )


async def balances_for_rules(conn: asyncpg.Connection, account_ids: Iterable[str]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT b.*, EXISTS (SELECT 1 FROM recharges r WHERE r.account_id = b.account_id
                                AND r.state = 'requested') AS in_flight
           FROM balances b WHERE b.account_id = ANY($1::text[]) ORDER BY b.account_id""",
        sorted(set(account_ids)),
    )
    return rows


async def has_card(conn: asyncpg.Connection, account_id: str) -> bool:
    return bool(await conn.fetchval(
        "SELECT payment_method_id IS NOT NULL FROM balances WHERE account_id = $1", account_id
    ))


async def save_card(conn: asyncpg.Connection, event: PaygCardSaved, now: datetime) -> bool:
    """The saved card becomes the card on file, unless one was set meanwhile (that one stays); auto-recharge
    turns on if nobody configured the account. False if the account has no balance to save it on."""
    row = await conn.fetchrow(
        "SELECT auto_recharge, configured_at FROM balances WHERE account_id = $1", event.account_id
    )
    if row is None:
        return False
    auto = auto_recharge_once_card_saved(row["auto_recharge"], row["configured_at"] is not None)
    await conn.execute(
        """UPDATE balances SET payment_method_id = coalesce(payment_method_id, $2),
                  customer_id = coalesce(customer_id, $3), auto_recharge = $4,
                  failures = CASE WHEN $4 AND NOT auto_recharge THEN 0 ELSE failures END,
                  backoff_until = CASE WHEN $4 AND NOT auto_recharge THEN NULL ELSE backoff_until END,
                  updated_at = $5
           WHERE account_id = $1""",
        event.account_id, event.payment_method_id, event.customer_id, auto, now,
    )
    return True


async def failure_state(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record:
    """The account's failed-recharge count and whether it recharges automatically."""
    row: asyncpg.Record = await conn.fetchrow(
        "SELECT failures, auto_recharge FROM balances WHERE account_id = $1", account_id
    )
    return row


async def record_failure(conn: asyncpg.Connection, account_id: str, failures: int, backoff_until: datetime | None,
                         disable_auto: bool) -> None:
    await conn.execute(
        """UPDATE balances SET failures = $2, backoff_until = $3, auto_recharge = auto_recharge AND NOT $4
           WHERE account_id = $1""",
        account_id, failures, backoff_until, disable_auto,
    )


async def clear_failures(conn: asyncpg.Connection, account_id: str) -> None:
    await conn.execute("UPDATE balances SET failures = 0, backoff_until = NULL WHERE account_id = $1", account_id)


class Marks(NamedTuple):
    """What the rules decided for one balance: below its threshold or not and how often it went below (the next
    alert's ordinal), its keys suspended or not and how many such decisions were made (the next event's sequence)."""

    account_id: str
    low: bool
    low_crossings: int
    keys_suspended: bool
    key_decisions: int


async def mark(conn: asyncpg.Connection, marks: Sequence[Marks]) -> None:
    """Record the rules' decisions of a batch, every account's in one statement."""
    if marks:
        await conn.execute(
            """UPDATE balances AS b SET low = m.low, low_crossings = m.low_crossings,
                      keys_suspended = m.keys_suspended, key_decisions = m.key_decisions
               FROM unnest($1::text[], $2::bool[], $3::int[], $4::bool[], $5::int[])
                    AS m(account_id, low, low_crossings, keys_suspended, key_decisions)
               WHERE b.account_id = m.account_id""",
            *(list(column) for column in zip(*marks, strict=True)),
        )
