"""What the console shows of billing periods: an account's period drawn with its forecast, included jobs and cap, its
caps in force and usage alerts raised; and the busiest accounts side by side. Reads only, through the owners'
queries and the forecast service."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from projections.caps import queries as caps_queries
from projections.db import Connect, has_table
from projections.ledger import queries as ledger_queries
from services.console.chart import OverviewChart, OverviewRow, PeriodChart, days_between, overview_chart, period_chart
from services.console.reads import Table
from services.ledger.forecasts import period_outlook
from services.ledger.periods import month_start
from services.platform.resources import Resources


async def account_caps(db: Connect, account_id: str) -> Table:
    """The account's caps in force, with its current period's usage and whether a cap holds its keys."""
    conn = await db("caps")
    if not await has_table(conn, "caps.caps"):
        return Table.missing("usage caps")
    return Table(True, [dict(r) for r in await caps_queries.caps(conn, account_id)])


async def account_alerts(db: Connect, account_id: str, limit: int = 20) -> Table:
    """The usage alerts raised for the account (each once per period), newest first."""
    conn = await db("caps")
    if not await has_table(conn, "caps.alerts"):
        return Table.missing("usage alerts")
    return Table(True, [dict(r) for r in await caps_queries.alerts(conn, account_id, limit)])


async def period(res: Resources, account_id: str, now: datetime) -> tuple[PeriodChart, dict[str, Any]]:
    """The account's billing period so far and its forecast, drawn; and the forecast's answer."""
    outlook = await period_outlook(res, account_id, now)
    doc = outlook.document
    last = (outlook.end - timedelta(microseconds=1)).date()
    chart = period_chart(days_between(outlook.start.date(), last), now.date(), outlook.per_day, doc["forecast_jobs"],
                         doc["forecast_low"], doc["forecast_high"], doc["included_jobs"], outlook.cap)
    return chart, doc


async def overview(res: Resources, now: datetime, limit: int = 12) -> OverviewChart:
    """The busiest accounts of this calendar month, each on its own billing period, so far and forecast."""
    async with res.pool_for("ledger").acquire() as conn:
        busiest = await ledger_queries.busiest_accounts(conn, month_start(now), limit)
    rows = []
    for row in busiest:
        seen = await period_outlook(res, row["account_id"], now)
        rows.append(OverviewRow(row["account_id"], seen.document["jobs_to_date"], seen.document["forecast_jobs"],
                                seen.cap, seen.document["included_jobs"]))
    return overview_chart(rows)
