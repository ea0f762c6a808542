"""An account's forecast for its current billing period: the one answer the CLI and the HTTP API give.

The period is the account's live Stripe subscription period when it has one, else the calendar month (UTC), as
for caps; `cap_reached_on` is the day the account's cap on all its jobs (or the plan's default) will be reached. The
jobs come from the ledger's hourly counts, so a period that starts mid-hour (a Stripe period starts when the
subscription did) counts from the start of that hour. An account that began during the period (registered, or
ran its first job, whichever came first) is forecast from its first day, not from the period's start. The method:
`projections/ledger/forecast.py`; what it means in money: `projections/ledger/forecast_terms.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from projections.accounts import queries as accounts
from projections.caps import queries as caps_queries
from projections.db import has_table
from projections.ledger.forecast import forecast
from projections.ledger.forecast_terms import PayAsYouGo, Subscription, Terms, Unpriced, charge
from projections.ledger.queries import daily_jobs
from projections.payg.rules import parse_prices
from projections.subscriptions.queries import LATEST_SUBSCRIPTION
from projections.subscriptions.state import ENDED, included_jobs
from services.ledger.periods import month_start, next_month
from services.platform.resources import Resources
from services.stripe_adapter.catalog import CURRENCY, OVERAGE_CENTS_PER_JOB
from services.subscriptions.plans import plans


@dataclass(frozen=True)
class Outlook:
    """The forecast of one account's period, with what a chart of it needs beside the answer."""

    start: datetime
    end: datetime
    per_day: dict[date, int]  # the period's jobs so far, per UTC day
    cap: int | None
    document: dict[str, Any]  # the answer of `jobmeter forecast` and GET /v1/accounts/{id}/forecast
    # What the forecast watcher needs to forecast one API surface's jobs and the spend: the jobs so far per API
    # surface and UTC day, when the account began (None: unknown) and how its jobs are priced.
    per_api_day: dict[str, dict[date, int]] = field(default_factory=dict)
    since: datetime | None = None
    terms: Terms = field(default_factory=Unpriced)


async def period_forecast(res: Resources, account_id: str, now: datetime) -> dict[str, Any]:
    return (await period_outlook(res, account_id, now)).document


async def period_outlook(res: Resources, account_id: str, now: datetime) -> Outlook:
    async with res.connections() as db:  # each projection's tables in its own database
        account = await accounts.account(await db("accounts"), account_id)
        terms = await _terms(await db("subscriptions"), res, account, now)
        start, end = (terms.start, terms.end) if isinstance(terms, Subscription) else _month(now)
        rows = await daily_jobs(await db("ledger"), account_id, start.replace(minute=0, second=0, microsecond=0))
        cap = await _jobs_cap(await db("caps"), res, account_id)
        since = await _began(await db("caps"), account, account_id)
    per_day: dict[date, int] = {}
    per_api: dict[str, int] = {}
    per_api_day: dict[str, dict[date, int]] = {}
    for row in rows:  # one row per day and API surface
        per_day[row["day"]] = per_day.get(row["day"], 0) + int(row["jobs"])
        per_api[row["api"]] = per_api.get(row["api"], 0) + int(row["jobs"])
        per_api_day.setdefault(row["api"], {})[row["day"]] = int(row["jobs"])
    if per_day:  # jobs logged before the registration (an imported account, a backfill) began it earlier
        first_day = datetime.combine(min(per_day), datetime.min.time(), tzinfo=UTC)
        since = first_day if since is None else min(since, first_day)
    result = forecast(start, end, now, per_day, cap, since)
    money = charge(terms, result.forecast_jobs, per_api)
    return Outlook(start, end, per_day, cap, {
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "billing_model": account["model"] if account is not None else None,
        "jobs_to_date": result.jobs_to_date,
        "forecast_jobs": result.forecast_jobs,
        "forecast_low": result.forecast_low,
        "forecast_high": result.forecast_high,
        "included_jobs": money.included_jobs,
        "forecast_overage_jobs": money.overage_jobs,
        "forecast_charge": (None if money.amount_minor is None
                            else {"amount": money.amount_minor, "currency": money.currency}),
        "cap_reached_on": result.cap_reached_on.isoformat() if result.cap_reached_on else None,
    }, per_api_day, since, terms)


async def _jobs_cap(conn: asyncpg.Connection, res: Resources, account_id: str) -> int | None:
    """The cap the forecast says when it will reach: the account's cap on all its jobs, else the plan's default."""
    own = await caps_queries.jobs_cap(conn, account_id) if await has_table(conn, "caps.caps") else None
    return own or (res.settings.jobmeter_cap_default_jobs or None)


async def _began(conn: asyncpg.Connection, account: asyncpg.Record | None, account_id: str) -> datetime | None:
    """When the account began: the earlier of its registration and its first job (the caps fold keeps every job's
    time, indexed by account; the ledger keeps hours). None when neither is known."""
    first = await caps_queries.first_job_at(conn, account_id) if await has_table(conn, "caps.seen") else None
    known = [t for t in (account["registered_at"] if account is not None else None, first) if t is not None]
    return min(known, default=None)


def _month(now: datetime) -> tuple[datetime, datetime]:
    start = month_start(now)
    return start, next_month(start)


async def _terms(conn: asyncpg.Connection, res: Resources, account: asyncpg.Record | None, now: datetime) -> Terms:
    if account is None:
        return Unpriced()
    if account["model"] == "payg":
        return PayAsYouGo(parse_prices(res.settings.jobmeter_payg_prices), res.settings.jobmeter_payg_currency)
    if account["stripe_customer_id"] is None:
        return Unpriced()
    sub = await conn.fetchrow(LATEST_SUBSCRIPTION, account["stripe_customer_id"])
    start, end = (sub["current_period_start"], sub["current_period_end"]) if sub is not None else (None, None)
    # A subscription that ended, or whose period on record is not the current one (no renewal seen yet), says
    # nothing about this period: the account is forecast over the calendar month, without a plan.
    if sub is None or sub["status"] in ENDED or start is None or end is None or not start <= now < end:
        return Unpriced()
    included = included_jobs(sub["base_price_id"], sub["status"], plans(res.settings))
    return Subscription(start, end, included, Decimal(OVERAGE_CENTS_PER_JOB), CURRENCY)
