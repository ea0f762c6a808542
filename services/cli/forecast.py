"""`jobmeter forecast`: where an account's jobs will end the billing period, and how well the method does on
histories whose truth is known (--backtest)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from projections.ledger.forecast import Forecast
from projections.ledger.forecast import forecast as forecast_period
from projections.ledger.queries import daily_jobs
from services.cli.common import console, errors, with_resources
from services.devtools.bench.forecast_backtest import KINDS, POINTS, backtest
from services.http.accounts import month_start, next_month
from services.platform.resources import Resources


def forecast(
    account: Annotated[str | None, typer.Argument(help="the account to forecast (this calendar month, UTC)")] = None,
    run_backtest: Annotated[bool, typer.Option("--backtest", help="score the method on generated histories")] = False,
    runs: Annotated[int, typer.Option(min=1, help="generated periods per kind and point (--backtest)")] = 200,
    seed: Annotated[int, typer.Option(help="random seed of the generated histories (--backtest)")] = 17,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """The account's jobs at the end of this month, with a 90 % interval; or, with --backtest, the method's error."""
    if run_backtest:
        _backtest(runs, seed, as_json)
    elif account is None:
        errors.print("[red]name an ACCOUNT to forecast, or pass --backtest to score the method[/red]")
        raise typer.Exit(2)
    else:
        _account(account, as_json)


def _account(account: str, as_json: bool) -> None:
    now = datetime.now(UTC)
    start = month_start(now)
    end = next_month(start)

    async def work(res: Resources) -> dict[date, int]:
        async with res.pool.acquire() as conn:
            rows = await daily_jobs(conn, account, start)
        per_day: dict[date, int] = {}
        for row in rows:  # one row per day and API surface
            per_day[row["day"]] = per_day.get(row["day"], 0) + int(row["jobs"])
        return per_day

    result = forecast_period(start, end, now, with_resources(work))
    document = as_document(start, end, result)
    if as_json:
        print(json.dumps(document, indent=2))
        return
    console.print(
        f"{account}, {start:%Y-%m-%d} → {end:%Y-%m-%d} UTC: [bold]{result.jobs_to_date:,}[/bold] jobs so far, "
        f"[bold]{result.forecast_jobs:,}[/bold] forecast ({result.forecast_low:,} – {result.forecast_high:,})"
    )


def as_document(start: datetime, end: datetime, result: Forecast) -> dict[str, Any]:
    return {
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "jobs_to_date": result.jobs_to_date,
        "forecast_jobs": result.forecast_jobs,
        "forecast_low": result.forecast_low,
        "forecast_high": result.forecast_high,
        "cap_reached_on": result.cap_reached_on.isoformat() if result.cap_reached_on else None,
    }


def _backtest(runs: int, seed: int, as_json: bool) -> None:
    scores = backtest(runs=runs, seed=seed)
    if as_json:
        print(json.dumps({"runs": runs, "seed": seed, "scores": [s.as_json() for s in scores]}, indent=2))
        return
    table = Table(title=f"forecast backtest: {runs} generated 30-day periods per cell, seed {seed}")
    table.add_column("history")
    for at in POINTS:
        table.add_column(f"MAPE {at:.0%}", justify="right")
        table.add_column(f"in interval {at:.0%}", justify="right")
    by_cell = {(s.kind, s.at): s for s in scores}
    for kind in KINDS:
        cells = [by_cell[kind, at] for at in POINTS]
        table.add_row(kind, *(text for s in cells for text in (f"{s.mape:.1f} %", f"{s.coverage:.0%}")))
    console.print(table)
