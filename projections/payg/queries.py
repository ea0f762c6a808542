"""Reads of the PAYG tables: the one place outside the fold and its workers' writes that queries `payg.*`.

Every function takes a connection, so a caller can read inside a transaction of its own. Functions named for
the console and the commands read the live `payg` schema by name; the ones the workers call read the schema
their transaction's search_path points at (`payg`, or its replay shadow).
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from projections.db import has_table
from projections.payg.store import Defaults


async def balances_overview(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every PAYG account (in PAYG's own view of the registry) with its balance row (NULLs before it has one),
    lowest balance first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT a.account_id, b.balance_minor, b.currency, b.threshold_minor, b.recharge_minor, b.auto_recharge,
                  b.failures, b.backoff_until, b.keys_suspended, b.updated_at,
                  EXISTS (SELECT 1 FROM payg.recharges r WHERE r.account_id = a.account_id
                          AND r.state = 'requested') AS recharge_in_flight
           FROM payg.accounts a LEFT JOIN payg.balances b USING (account_id)
           WHERE a.model = 'payg' ORDER BY b.balance_minor NULLS FIRST, a.account_id"""
    )
    return rows


async def balances(conn: asyncpg.Connection, defaults: Defaults) -> list[asyncpg.Record]:
    """Every PAYG account's balance, lowest first; an account without a balance row reads as `defaults`."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT a.account_id, coalesce(b.balance_minor, 0) AS balance_minor,
                  coalesce(b.currency, $1) AS currency, coalesce(b.threshold_minor, $2) AS threshold_minor,
                  coalesce(b.recharge_minor, $3) AS recharge_minor,
                  coalesce(b.auto_recharge, false) AS auto_recharge,
                  EXISTS (SELECT 1 FROM payg.recharges r WHERE r.account_id = a.account_id
                          AND r.state = 'requested') AS recharge_in_flight,
                  coalesce(b.keys_suspended, false) AS keys_suspended
           FROM payg.accounts a LEFT JOIN payg.balances b USING (account_id)
           WHERE a.model = 'payg' ORDER BY 2, 1""",
        defaults.currency, defaults.threshold_minor, defaults.recharge_minor,
    )
    return rows


async def balance(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    """The account's balance row, None before the fold opened one."""
    return await conn.fetchrow("SELECT * FROM payg.balances WHERE account_id = $1", account_id)


async def recharges(conn: asyncpg.Connection, account_id: str | None, limit: int) -> list[asyncpg.Record]:
    """The latest recharges (of one account, when given), newest request first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT account_id, seq, amount_minor, currency, state, payment_intent_id, attempts, failure_code,
                  requested_at, settled_at
           FROM payg.recharges WHERE $1::text IS NULL OR account_id = $1 ORDER BY requested_at DESC LIMIT $2""",
        account_id, limit,
    )
    return rows


async def recharge_history(conn: asyncpg.Connection, account_id: str, limit: int) -> list[asyncpg.Record]:
    """One account's latest recharges, newest first, with their idempotency keys and when each was sent."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT recharge_id, seq, amount_minor, currency, state, idempotency_key, payment_intent_id, attempts,
                  failure_code, requested_at, sent_at, settled_at
           FROM payg.recharges WHERE account_id = $1 ORDER BY seq DESC LIMIT $2""",
        account_id, limit,
    )
    return rows


async def customer_of(conn: asyncpg.Connection, account_id: str) -> str | None:
    """The Stripe customer on file for the account's balance (search_path schema)."""
    customer: str | None = await conn.fetchval("SELECT customer_id FROM balances WHERE account_id = $1", account_id)
    return customer


async def recharge_need(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    """The account's balance and threshold now (search_path schema): whether a recharge in flight is still
    needed."""
    return await conn.fetchrow(
        "SELECT balance_minor, threshold_minor FROM balances WHERE account_id = $1", account_id
    )


# What the developer tools read (the demo's scenarios, the chaos run's invariants)


async def debit_count(conn: asyncpg.Connection, account_id: str) -> int:
    """How many jobs the account has been debited for."""
    return int(await conn.fetchval(
        "SELECT count(*) FROM payg.movements WHERE account_id = $1 AND kind = 'debit'", account_id
    ))


async def debits(conn: asyncpg.Connection) -> dict[str, tuple[int, int]]:
    """Per account: how many debits, and their total in minor units (as a positive amount)."""
    rows = await conn.fetch(
        """SELECT account_id, count(*) AS n, coalesce(sum(-amount_minor), 0)::bigint AS m
           FROM payg.movements WHERE kind = 'debit' GROUP BY 1"""
    )
    return {r["account_id"]: (int(r["n"]), int(r["m"])) for r in rows}


async def recharge_credits(conn: asyncpg.Connection) -> list[tuple[str, str, int]]:
    """Every recharge credited to a balance: (reference, account_id, amount_minor)."""
    rows = await conn.fetch("SELECT reference, account_id, amount_minor FROM payg.movements WHERE kind = 'recharge'")
    return [(r["reference"], r["account_id"], int(r["amount_minor"])) for r in rows]


async def all_recharges(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every recharge: recharge_id, account_id, idempotency_key, payment_intent_id, state, amount_minor, and how
    far the recharger got (attempts, sent_at, claimed_until, last_error)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT recharge_id, account_id, idempotency_key, payment_intent_id, state, amount_minor,
                  attempts, sent_at, claimed_until, last_error FROM payg.recharges"""
    )
    return rows


async def recharges_awaiting_payment(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Recharges sent to Stripe (a PaymentIntent made) whose payment has not been folded yet: whole rows."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM payg.recharges WHERE state = 'requested' AND payment_intent_id IS NOT NULL"
    )
    return rows


async def debits_per_account(conn: asyncpg.Connection, start: datetime, end: datetime) -> dict[str, int] | None:
    """Jobs debited per account in [start, end) (one debit a job); None where PAYG does not run (no table)."""
    if not await has_table(conn, "payg.movements"):
        return None
    rows = await conn.fetch(
        """SELECT account_id, count(*)::bigint AS debits FROM payg.movements
           WHERE kind = 'debit' AND at >= $1 AND at < $2 GROUP BY 1""",
        start, end,
    )
    return {r["account_id"]: r["debits"] for r in rows}


async def customer_of_payment(conn: asyncpg.Connection, payment_intent_id: str) -> str | None:
    """The Stripe customer whose top-up or recharge this PaymentIntent paid; None when it credited no balance (or
    the balance knows no customer)."""
    customer: str | None = await conn.fetchval(
        """SELECT b.customer_id FROM payg.movements m JOIN payg.balances b USING (account_id)
           WHERE m.payment_intent_id = $1 AND m.kind IN ('topup', 'recharge') LIMIT 1""", payment_intent_id,
    )
    return customer


# What `jobmeter doctor` reads: work that should have ended by now (the bounds are its own)


async def recharges_requested_before(conn: asyncpg.Connection, before: datetime) -> list[asyncpg.Record]:
    """Recharges still `requested` (neither paid, failed nor canceled) that the fold recorded before `before` (the
    wall clock: a consumer that was behind records them with old log times), oldest first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT recharge_id, account_id, amount_minor, currency, payment_intent_id, attempts, sent_at, last_error,
                  requested_at, recorded_at
           FROM payg.recharges WHERE state = 'requested' AND recorded_at < $1 ORDER BY recorded_at""",
        before,
    )
    return rows


async def parked_jobs_per_account(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Per account whose jobs PAYG holds until it is registered: how many, and the oldest one's completion."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT account_id, count(*)::bigint AS jobs, min(completed_at) AS oldest
           FROM payg.parked_jobs GROUP BY 1 ORDER BY 3"""
    )
    return rows


async def parked_topups(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every parked top-up: session_id, account_id, when its Stripe event was logged, and refused_at (set when its
    account turned out to be billed otherwise)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT session_id, account_id, (envelope::jsonb ->> 'occurred_at')::timestamptz AS parked_since, refused_at
           FROM payg.parked_topups ORDER BY 3"""
    )
    return rows
