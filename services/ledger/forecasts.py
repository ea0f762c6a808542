"""An account's forecast for this calendar month (UTC), from the ledger's daily counts: the one answer the CLI
and the HTTP API give (the method: `projections/ledger/forecast.py`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from projections.ledger.forecast import forecast
from projections.ledger.queries import daily_jobs
from services.ledger.periods import month_start, next_month
from services.platform.resources import Resources


async def month_forecast(res: Resources, account_id: str, now: datetime) -> dict[str, Any]:
    start = month_start(now)
    end = next_month(start)
    async with res.pool.acquire() as conn:
        rows = await daily_jobs(conn, account_id, start)
    per_day: dict[date, int] = {}
    for row in rows:  # one row per day and API surface
        per_day[row["day"]] = per_day.get(row["day"], 0) + int(row["jobs"])
    result = forecast(start, end, now, per_day)
    return {
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "jobs_to_date": result.jobs_to_date,
        "forecast_jobs": result.forecast_jobs,
        "forecast_low": result.forecast_low,
        "forecast_high": result.forecast_high,
        "cap_reached_on": result.cap_reached_on.isoformat() if result.cap_reached_on else None,
    }
