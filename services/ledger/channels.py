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

from projections.accounts import queries as account_queries
from projections.ledger import queries as ledger_queries
from projections.meter import queries as meter_queries
from projections.payg import queries as payg_queries
from projections.rapidapi import queries as rapidapi_queries
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


async def channel_report(res: Resources, period: str) -> list[AccountChannels]:
    start, end = month_bounds(period)
    async with res.connections() as db:  # each area's figures from its own projection's database
        models = await account_queries.models(await db("accounts"))
        ledger = await ledger_queries.jobs_per_channel(await db("ledger"), start, end)
        stripe = await meter_queries.sent_per_account(await db("meter"), start, end)
        payg = await payg_queries.debits_per_account(await db("payg"), start, end)
        marketplace = await db("rapidapi")
        rapidapi = await rapidapi_queries.per_account(marketplace, period, res.settings.rapidapi_billing_object)
        export_in = await rapidapi_queries.export_imported(marketplace, period)
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

