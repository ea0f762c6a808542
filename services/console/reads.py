"""What the console pages show, read from the projections' tables.

Other areas' tables may not exist yet in a given deployment (or a given test database): every read that
depends on one checks first and returns None, which the page shows as "not available".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from services.console.chart import Chart, days_between, usage_chart

SIMULATED_PREFIX = "evt_console"  # event ids of the console's simulated deliveries: the log marks them


async def has_table(conn: asyncpg.Connection, qualified: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", qualified))


def plain(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return dict(row.items())


@dataclass(frozen=True)
class Table:
    """Rows as the page shows them; `available` is False when the table behind them does not exist."""

    available: bool
    rows: list[dict[str, Any]]
    why: str = ""

    @classmethod
    def missing(cls, what: str) -> Table:
        return cls(False, [], f"{what} is not available in this deployment")


async def accounts(conn: asyncpg.Connection) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """Every account with its channel, and its key and dunning state where those projections exist."""
    have = {
        "keys": await has_table(conn, "keys.keys") and await has_table(conn, "keys.suspensions"),
        "standing": await has_table(conn, "key_lifecycle.customers"),
        "subscriptions": await has_table(conn, "subscriptions.subscriptions"),
        "rapidapi": await has_table(conn, "rapidapi.users"),
        "payg": await has_table(conn, "payg.balances"),
    }
    keys = (
        """, (SELECT count(*) FROM keys.keys k WHERE k.account_id = a.account_id AND k.state = 'active')
               AS active_keys,
             (SELECT s.suspended FROM keys.suspensions s WHERE s.account_id = a.account_id) AS suspended"""
        if have["keys"] else ""
    )
    standing = (
        """, (SELECT c.standing FROM key_lifecycle.customers c
              WHERE c.customer_id = a.stripe_customer_id) AS standing"""
        if have["standing"] else ""
    )
    subscription = (
        """, (SELECT s.status FROM subscriptions.subscriptions s
              WHERE s.customer_id = a.stripe_customer_id ORDER BY s.last_event_created DESC LIMIT 1) AS sub_status,
             (SELECT s.base_price_id FROM subscriptions.subscriptions s
              WHERE s.customer_id = a.stripe_customer_id ORDER BY s.last_event_created DESC LIMIT 1) AS sub_price"""
        if have["subscriptions"] else ""
    )
    marketplace = (
        ", (SELECT u.plan FROM rapidapi.users u WHERE u.account_id = a.account_id) AS rapidapi_plan"
        if have["rapidapi"] else ""
    )
    prepaid = (
        """, (SELECT b.balance_minor FROM payg.balances b WHERE b.account_id = a.account_id) AS balance_minor,
             (SELECT b.currency FROM payg.balances b WHERE b.account_id = a.account_id) AS currency"""
        if have["payg"] else ""
    )
    rows = await conn.fetch(
        f"""SELECT a.account_id, a.model, a.stripe_customer_id, a.display_name, a.registered_at,
                   CASE WHEN a.model = 'rapidapi' THEN 'rapidapi' ELSE 'direct' END AS channel
                   {keys} {standing} {subscription} {marketplace} {prepaid}
            FROM accounts.accounts a ORDER BY a.account_id"""  # noqa: S608
    )
    return [plain(r) for r in rows], have


def plan_status(row: dict[str, Any], have: dict[str, bool], plan_names: dict[str, str]) -> str:
    """One cell: what the account pays with, as far as this deployment's projections know."""
    model = row["model"]
    if model == "subscription":
        if not have["subscriptions"]:
            return "not available"
        if row.get("sub_status") is None:
            return "no subscription"
        price = row.get("sub_price")
        return f"{plan_names.get(price or '', price or 'unknown plan')} · {row['sub_status']}"
    if model == "rapidapi":
        return (row.get("rapidapi_plan") or "plan not seen yet") if have["rapidapi"] else "not available"
    if model == "payg":
        if not have["payg"]:
            return "not available"
        return f"balance {row.get('balance_minor') or 0} {row.get('currency') or ''}".rstrip()
    return "—"


def key_state(row: dict[str, Any], have_keys: bool) -> str:
    """One word for the table: what the key check would answer for this account's keys."""
    if not have_keys:
        return "not available"
    if row.get("suspended"):
        return "suspended"
    return "active" if row.get("active_keys") else "no keys"


async def account(conn: asyncpg.Connection, account_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM accounts.accounts WHERE account_id = $1", account_id)
    return plain(row) if row else None


async def account_keys(conn: asyncpg.Connection, account_id: str) -> Table:
    if not (await has_table(conn, "keys.keys") and await has_table(conn, "keys.suspensions")):
        return Table.missing("the key store")
    rows = await conn.fetch(
        """SELECT k.key_id, k.prefix, k.state, coalesce(s.suspended, false) AS suspended,
                  CASE WHEN s.suspended THEN s.reason END AS suspended_reason, k.issued_at
           FROM keys.keys k LEFT JOIN keys.suspensions s USING (account_id)
           WHERE k.account_id = $1 ORDER BY k.issued_at""",
        account_id,
    )
    return Table(True, [plain(r) for r in rows])


def account_key_state(keys: Table, suspension: dict[str, Any] | None) -> str:
    """What the key check answers for this account's keys, in words."""
    if not keys.available:
        return "not available"
    if suspension and suspension.get("suspended"):
        return f"suspended: {suspension['reason']}"
    return "active" if any(k["state"] == "active" for k in keys.rows) else "no keys"


async def suspension(conn: asyncpg.Connection, account_id: str) -> dict[str, Any] | None:
    if not await has_table(conn, "keys.suspensions"):
        return None
    row = await conn.fetchrow("SELECT * FROM keys.suspensions WHERE account_id = $1", account_id)
    return plain(row) if row else None


async def usage(conn: asyncpg.Connection, account_id: str, apis: list[str], *, days: int = 30, at_least: int = 7,
                today: date | None = None) -> Chart:
    """The account's jobs per API surface and UTC day, over the last `days` days, from its first day of usage
    (but never fewer than `at_least` days), so a new account's bars are not squeezed into a corner."""
    last = today or datetime.now(UTC).date()
    first = last - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    rows = await conn.fetch(
        """SELECT (date_trunc('day', hour, 'UTC') AT TIME ZONE 'UTC')::date AS day, api, sum(jobs)::bigint AS jobs
           FROM ledger.hourly WHERE account_id = $1 AND hour >= $2 GROUP BY 1, 2""",
        account_id, start,
    )
    counts = {(r["day"], r["api"]): int(r["jobs"]) for r in rows}
    known = list(apis) + sorted({api for _, api in counts} - set(apis))  # a retired surface still shows
    first_used = min((day for day, _ in counts), default=last)
    first = max(first, min(first_used, last - timedelta(days=at_least - 1)))
    return usage_chart(counts, known, days_between(first, last))


async def meter_reports(conn: asyncpg.Connection, account_id: str | None = None, limit: int = 200) -> Table:
    if not await has_table(conn, "meter.reports"):
        return Table.missing("the Stripe meter reporter")
    rows = await conn.fetch(
        """SELECT account_id, customer_id, window_start, seq, value, state, attempts, last_error, sent_at, identifier
           FROM meter.reports WHERE $1::text IS NULL OR account_id = $1
           ORDER BY window_start DESC, customer_id, seq LIMIT $2""",
        account_id, limit,
    )
    return Table(True, [plain(r) for r in rows])


async def meter_totals(conn: asyncpg.Connection) -> Table:
    if not await has_table(conn, "meter.reports"):
        return Table.missing("the Stripe meter reporter")
    rows = await conn.fetch(
        "SELECT state, count(*)::bigint AS reports, sum(value)::bigint AS jobs FROM meter.reports GROUP BY 1 ORDER BY 1"
    )
    return Table(True, [plain(r) for r in rows])


async def webhook_log(conn: asyncpg.Connection, limit: int = 100, account_id: str | None = None) -> Table:
    if not await has_table(conn, "webhooks.log"):
        return Table.missing("the webhook log")
    rows = await conn.fetch(
        """SELECT stripe_event_id, type, customer_id, account_id, created, received_at, deliveries,
                  starts_with(stripe_event_id, $3) AS simulated
           FROM webhooks.log WHERE $2::text IS NULL OR account_id = $2 ORDER BY received_at DESC LIMIT $1""",
        limit, account_id, SIMULATED_PREFIX,
    )
    return Table(True, [plain(r) for r in rows])


async def payg_balances(conn: asyncpg.Connection) -> Table:
    if not await has_table(conn, "payg.balances"):
        return Table.missing("pay-as-you-go")
    rows = await conn.fetch(
        """SELECT a.account_id, b.balance_minor, b.currency, b.threshold_minor, b.recharge_minor, b.auto_recharge,
                  b.failures, b.backoff_until, b.keys_suspended, b.updated_at,
                  EXISTS (SELECT 1 FROM payg.recharges r WHERE r.account_id = a.account_id
                          AND r.state = 'requested') AS recharge_in_flight
           FROM accounts.accounts a LEFT JOIN payg.balances b USING (account_id)
           WHERE a.model = 'payg' ORDER BY b.balance_minor NULLS FIRST, a.account_id"""
    )
    return Table(True, [plain(r) for r in rows])


async def payg_balance(conn: asyncpg.Connection, account_id: str) -> dict[str, Any] | None:
    if not await has_table(conn, "payg.balances"):
        return None
    row = await conn.fetchrow("SELECT * FROM payg.balances WHERE account_id = $1", account_id)
    return plain(row) if row else {}


async def payg_recharges(conn: asyncpg.Connection, account_id: str | None = None, limit: int = 100) -> Table:
    if not await has_table(conn, "payg.recharges"):
        return Table.missing("pay-as-you-go")
    rows = await conn.fetch(
        """SELECT account_id, seq, amount_minor, currency, state, payment_intent_id, attempts, failure_code,
                  requested_at, settled_at
           FROM payg.recharges WHERE $1::text IS NULL OR account_id = $1 ORDER BY requested_at DESC LIMIT $2""",
        account_id, limit,
    )
    return Table(True, [plain(r) for r in rows])


async def positions(conn: asyncpg.Connection, schemas: list[str]) -> dict[str, int]:
    """How many records each projection has folded (the sum of its next offsets)."""
    found: dict[str, int] = {}
    for schema in schemas:
        quoted = '"' + schema.replace('"', '""') + '"'
        if await has_table(conn, f"{quoted}.positions"):
            found[schema] = int(await conn.fetchval(f"SELECT coalesce(sum(next_offset), 0) FROM {quoted}.positions"))  # noqa: S608
    return found


async def live(conn: asyncpg.Connection, schemas: list[str]) -> dict[str, Any]:
    """The numbers the live page polls: small, cheap queries only."""
    now = datetime.now(UTC)
    jobs = await conn.fetchval("SELECT coalesce(sum(jobs), 0)::bigint FROM ledger.hourly")
    recent = await conn.fetchval(
        "SELECT count(*)::bigint FROM ledger.jobs WHERE logged_at > $1", now - timedelta(minutes=5)
    )
    log = await webhook_log(conn, limit=50)
    meter = await meter_totals(conn)
    return {
        "at": now.isoformat(timespec="seconds"),
        "jobs_total": int(jobs),
        "jobs_last_5_minutes": int(recent),
        "accounts": int(await conn.fetchval("SELECT count(*) FROM accounts.accounts")),
        "webhooks": [
            {"id": r["stripe_event_id"], "type": r["type"], "account": r["account_id"],
             "received_at": r["received_at"].isoformat(timespec="seconds"), "simulated": r["simulated"]}
            for r in log.rows
        ] if log.available else None,
        "meter": {r["state"]: int(r["reports"]) for r in meter.rows} if meter.available else None,
        "positions": await positions(conn, schemas),
    }
