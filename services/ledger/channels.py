"""One metric across channels: per account and month, the ledger's jobs beside what each channel billed.

Finance reads one number per account (the ledger's jobs); beside it, what Stripe was sent (the meter reporter's
`meter.reports` in state `sent`), what RapidAPI was told and what it reported (the `rapidapi` projection), and
what PAYG debited (`payg.movements` of kind `debit`, one per job). A channel whose store does not exist in this
deployment shows None ("–"). An account is flagged where a channel's figure differs from the ledger's jobs on
the traffic that channel bills: Stripe and PAYG bill the direct channel, RapidAPI its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from projections.rapidapi.queries import per_account
from services.platform.resources import Resources


def month_bounds(period: str) -> tuple[datetime, datetime]:
    """`YYYY-MM` -> [first instant, first instant of the next month), in UTC."""
    try:
        start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"period {period!r} is not a month (YYYY-MM)") from None
    return start, start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


@dataclass
class AccountChannels:
    account_id: str
    model: str | None
    ledger_jobs: int = 0
    ledger_direct: int = 0
    ledger_rapidapi: int = 0
    stripe_sent: int | None = None
    rapidapi_declared: int | None = None
    rapidapi_reported: int | None = None
    payg_debits: int | None = None
    differences: list[str] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        figures = {k: v for k, v in row.items() if k not in ("account_id", "model", "differences")}
        return {"account_id": self.account_id, "model": self.model, "flag": "DIFFERS" if self.differences else "ok",
                **figures, "differences": "; ".join(self.differences)}


def differences(a: AccountChannels) -> list[str]:
    """Where a channel's figure differs from the ledger's jobs on the traffic that channel bills."""
    found = []
    for name, figure, ledger in (
        ("stripe sent", a.stripe_sent, a.ledger_direct),
        ("payg debited", a.payg_debits, a.ledger_direct),
        ("rapidapi declared", a.rapidapi_declared, a.ledger_rapidapi),
        ("rapidapi reported", a.rapidapi_reported, a.ledger_rapidapi),
    ):
        if figure is not None and figure != ledger:
            found.append(f"{name} {figure} ≠ ledger {ledger}")
    return found


async def _exists(conn: asyncpg.Connection, table: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


async def channel_report(res: Resources, period: str) -> list[AccountChannels]:
    start, end = month_bounds(period)
    async with res.pool.acquire() as conn:
        registered = await conn.fetch("SELECT account_id, model FROM accounts.accounts")
        models = {r["account_id"]: r["model"] for r in registered}
        ledger = await conn.fetch(
            """SELECT account_id, channel, sum(jobs)::bigint AS jobs FROM ledger.hourly
               WHERE hour >= $1 AND hour < $2 GROUP BY 1, 2""",
            start, end,
        )
        stripe = (
            await _sums(conn, """SELECT account_id, sum(value)::bigint FROM meter.reports
                                 WHERE state = 'sent' AND window_start >= $1 AND window_start < $2 GROUP BY 1""",
                        start, end)
            if await _exists(conn, "meter.reports") else None
        )
        payg = (
            await _sums(conn, """SELECT account_id, count(*)::bigint FROM payg.movements
                                 WHERE kind = 'debit' AND at >= $1 AND at < $2 GROUP BY 1""", start, end)
            if await _exists(conn, "payg.movements") else None
        )
        rapidapi = await per_account(conn, period, res.settings.rapidapi_billing_object)
        export_in = bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM rapidapi.reported_rows WHERE period = $1)",
                                             period))
    accounts: dict[str, AccountChannels] = {}

    def of(account_id: str) -> AccountChannels:
        return accounts.setdefault(account_id, AccountChannels(account_id, models.get(account_id)))

    for r in ledger:
        a = of(r["account_id"])
        a.ledger_jobs += r["jobs"]
        if r["channel"] == "rapidapi":
            a.ledger_rapidapi += r["jobs"]
        else:
            a.ledger_direct += r["jobs"]
    active = {account_id for account_id, f in rapidapi.items() if f["declared"] or f["reported"]}
    for account_id in {*(stripe or {}), *(payg or {}), *active}:
        of(account_id)
    for a in accounts.values():
        if stripe is not None and (a.model == "subscription" or a.account_id in stripe):
            a.stripe_sent = stripe.get(a.account_id, 0)
        if payg is not None and (a.model == "payg" or a.account_id in payg):
            a.payg_debits = payg.get(a.account_id, 0)
        if a.account_id in rapidapi or a.ledger_rapidapi:
            figures = rapidapi.get(a.account_id, {"declared": 0, "reported": 0})
            a.rapidapi_declared = figures["declared"]
            a.rapidapi_reported = figures["reported"] if export_in else None  # no export yet: unknown, not 0
        a.differences = differences(a)
    return sorted(accounts.values(), key=lambda a: a.account_id)


async def _sums(conn: asyncpg.Connection, sql: str, *args: Any) -> dict[str, int]:
    return {r[0]: r[1] for r in await conn.fetch(sql, *args)}
