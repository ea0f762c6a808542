"""What the console pages show: the owning areas' reads (`projections/<area>/queries.py`, the webhook log's store),
shaped for the pages. No SQL here. Each projection may live in its own database (JOBMETER_<NAME>_DATABASE_URL): a
read takes `db` and asks it for the connection of the projection it reads, `await db("keys")`.

Other areas' tables may not exist yet in a given deployment (or a given test database): every read that
depends on one checks first and returns None, which the page shows as "not available".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from projections.accounts import queries as account_queries
from projections.db import Connect, has_table
from projections.key_lifecycle import queries as lifecycle_queries
from projections.keys import queries as key_queries
from projections.ledger import queries as ledger_queries
from projections.meter import queries as meter_queries
from projections.payg import queries as payg_queries
from projections.rapidapi import queries as rapidapi_queries
from projections.rapidapi.reconcile import Tolerance, reconcile
from projections.subscriptions import queries as subscription_queries
from projections.webhooks import queries as outgoing_webhook_queries
from services.console.chart import Chart, days_between, usage_chart
from services.stripe_adapter import simulation
from services.stripe_adapter import store as webhook_store

ACCOUNT_COLUMNS = ("account_id", "model", "stripe_customer_id", "display_name", "registered_at")
KEY_COLUMNS = ("key_id", "prefix", "state", "suspended", "suspended_reason", "issued_at")


@dataclass(frozen=True)
class Table:
    """Rows as the page shows them; `available` is False when the table behind them does not exist."""

    available: bool
    rows: list[dict[str, Any]]
    why: str = ""

    @classmethod
    def missing(cls, what: str) -> Table:
        return cls(False, [], f"{what} is not available in this deployment")


# One area's columns of the accounts table: read once, then looked up per account row.
Columns = Callable[[dict[str, Any]], dict[str, Any]]


async def _key_columns(db: Connect) -> Columns:
    conn = await db("keys")
    active = Counter(k["account_id"] for k in await key_queries.keys(conn) if k["state"] == "active")
    held = await key_queries.held(conn)
    return lambda row: {"active_keys": active[row["account_id"]], "suspended": row["account_id"] in held,
                        "held_by": held.get(row["account_id"])}


async def _standing_columns(db: Connect) -> Columns:
    standings = await lifecycle_queries.standings(await db("key-lifecycle"))
    return lambda row: {"standing": standings.get(row["stripe_customer_id"] or "")}


async def _subscription_columns(db: Connect) -> Columns:
    latest = await subscription_queries.latest_per_customer(await db("subscriptions"))

    def columns(row: dict[str, Any]) -> dict[str, Any]:
        sub = latest.get(row["stripe_customer_id"] or "")
        return {"sub_status": sub["status"] if sub else None, "sub_price": sub["base_price_id"] if sub else None}

    return columns


async def _rapidapi_columns(db: Connect) -> Columns:
    plans = await rapidapi_queries.plans(await db("rapidapi"))
    return lambda row: {"rapidapi_plan": plans.get(row["account_id"])}


async def _payg_columns(db: Connect) -> Columns:
    balances = {b["account_id"]: b for b in await payg_queries.balances_overview(await db("payg"))}

    def columns(row: dict[str, Any]) -> dict[str, Any]:
        found = balances.get(row["account_id"])
        return {"balance_minor": found["balance_minor"] if found else None,
                "currency": found["currency"] if found else None}

    return columns


AREA_COLUMNS: dict[str, Callable[[Connect], Awaitable[Columns]]] = {
    "keys": _key_columns,
    "standing": _standing_columns,
    "subscriptions": _subscription_columns,
    "rapidapi": _rapidapi_columns,
    "payg": _payg_columns,
}


async def accounts(db: Connect) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """Every account with its channel, and its key and dunning state where those projections exist."""
    keys = await db("keys")
    have = {
        "keys": await has_table(keys, "keys.keys") and await has_table(keys, "keys.suspensions"),
        "standing": await has_table(await db("key-lifecycle"), "key_lifecycle.customers"),
        "subscriptions": await has_table(await db("subscriptions"), "subscriptions.subscriptions"),
        "rapidapi": await has_table(await db("rapidapi"), "rapidapi.users"),
        "payg": await has_table(await db("payg"), "payg.balances"),
    }
    rows = [
        {**{c: r[c] for c in ACCOUNT_COLUMNS}, "channel": "rapidapi" if r["model"] == "rapidapi" else "direct"}
        for r in await account_queries.accounts(await db("accounts"))
    ]
    for area, read in AREA_COLUMNS.items():
        if have[area]:
            columns = await read(db)
            for row in rows:
                row.update(columns(row))
    return rows, have


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


async def account(db: Connect, account_id: str) -> dict[str, Any] | None:
    row = await account_queries.account(await db("accounts"), account_id)
    return dict(row) if row else None


async def account_keys(db: Connect, account_id: str) -> Table:
    conn = await db("keys")
    if not (await has_table(conn, "keys.keys") and await has_table(conn, "keys.suspensions")):
        return Table.missing("the key store")
    rows = await key_queries.keys(conn, account_id)
    return Table(True, [{c: r[c] for c in KEY_COLUMNS} for r in rows])


def account_key_state(keys: Table, suspension: dict[str, Any] | None) -> str:
    """What the key check answers for this account's keys, in words."""
    if not keys.available:
        return "not available"
    if suspension and suspension.get("suspended"):
        return f"suspended: {suspension['reason']}"
    return "active" if any(k["state"] == "active" for k in keys.rows) else "no keys"


async def suspension(db: Connect, account_id: str) -> dict[str, Any] | None:
    """Whether any source holds the account, with every holding source's reason; None when none ever decided."""
    conn = await db("keys")
    if not await has_table(conn, "keys.suspensions"):
        return None
    rows = await key_queries.holds(conn, account_id)
    if not rows:
        return None
    holding = [r for r in rows if r["suspended"]]
    return {"suspended": bool(holding), "reason": "; ".join(f"{r['source']}: {r['reason']}" for r in holding),
            "holds": [dict(r) for r in rows]}


async def usage(db: Connect, account_id: str, apis: list[str], *, days: int = 30, at_least: int = 7,
                today: date | None = None) -> Chart:
    """The account's jobs per API surface and UTC day, over the last `days` days, from its first day of usage
    (but never fewer than `at_least` days), so a new account's bars are not squeezed into a corner."""
    last = today or datetime.now(UTC).date()
    first = last - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    rows = await ledger_queries.daily_jobs(await db("ledger"), account_id, start)
    counts = {(r["day"], r["api"]): int(r["jobs"]) for r in rows}
    known = list(apis) + sorted({api for _, api in counts} - set(apis))  # a retired surface still shows
    first_used = min((day for day, _ in counts), default=last)
    first = max(first, min(first_used, last - timedelta(days=at_least - 1)))
    return usage_chart(counts, known, days_between(first, last))


async def meter_reports(db: Connect, account_id: str | None = None, limit: int = 200) -> Table:
    conn = await db("meter")
    if not await has_table(conn, "meter.reports"):
        return Table.missing("the Stripe meter reporter")
    return Table(True, [dict(r) for r in await meter_queries.latest_reports(conn, account_id, limit)])


async def webhook_deliveries(db: Connect, account_id: str, limit: int = 20) -> Table:
    """The account's outgoing webhook deliveries, newest first, with where they went."""
    conn = await db("webhooks")
    if not await has_table(conn, "outgoing_webhooks.deliveries"):
        return Table.missing("outgoing webhooks")
    return Table(True, [dict(r) for r in await outgoing_webhook_queries.deliveries(conn, account_id, limit)])


async def alert_mails(db: Connect, account_id: str, limit: int = 20) -> Table:
    """The account's alert emails, newest first: to whom and when each went, or why it has not yet."""
    conn = await db("webhooks")
    if not await has_table(conn, "outgoing_webhooks.alert_mails"):
        return Table.missing("alert emails")
    return Table(True, [dict(r) for r in await outgoing_webhook_queries.alert_mails(conn, account_id, limit)])


async def meter_totals(db: Connect) -> Table:
    conn = await db("meter")
    if not await has_table(conn, "meter.reports"):
        return Table.missing("the Stripe meter reporter")
    return Table(True, [dict(r) for r in await meter_queries.totals_by_state(conn)])


async def webhook_log(conn: asyncpg.Connection, limit: int = 100, account_id: str | None = None) -> Table:
    if not await has_table(conn, "webhooks.log"):
        return Table.missing("the webhook log")
    rows = await webhook_store.latest(conn, limit, account_id, simulated_prefixes=simulation.SIMULATED_PREFIXES)
    return Table(True, [dict(r) for r in rows])


async def payg_balances(db: Connect) -> Table:
    conn = await db("payg")
    if not await has_table(conn, "payg.balances"):
        return Table.missing("pay-as-you-go")
    return Table(True, [dict(r) for r in await payg_queries.balances_overview(conn)])


async def payg_balance(db: Connect, account_id: str) -> dict[str, Any] | None:
    """None when PAYG is not deployed here; {} before the account's balance row exists."""
    conn = await db("payg")
    if not await has_table(conn, "payg.balances"):
        return None
    row = await payg_queries.balance(conn, account_id)
    return dict(row) if row else {}


async def payg_recharges(db: Connect, account_id: str | None = None, limit: int = 100) -> Table:
    conn = await db("payg")
    if not await has_table(conn, "payg.recharges"):
        return Table.missing("pay-as-you-go")
    return Table(True, [dict(r) for r in await payg_queries.recharges(conn, account_id, limit)])


async def rapidapi_month(
    db: Connect, period: str, billing_object: str, tolerance: str
) -> tuple[list[dict[str, Any]] | None, bool]:
    """Each RapidAPI user's three numbers for the month with what reconciling them flags, and whether the
    month's export was imported; None for the users when the RapidAPI tables do not exist here."""
    conn = await db("rapidapi")
    if not await has_table(conn, "rapidapi.reported"):
        return None, False
    users = await rapidapi_queries.figures(conn, period, billing_object)
    imported = await rapidapi_queries.export_imported(conn, period)
    flagged = {(d.rapidapi_user, d.kind)
               for d in reconcile(period, users, Tolerance.parse(tolerance), export_imported=imported)}
    found = [
        {**u.__dict__, "flags": sorted(k for user, k in flagged if user == u.rapidapi_user)}
        for u in users
    ]
    return found, imported
