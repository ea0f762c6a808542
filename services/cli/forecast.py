"""`jobmeter forecast`: where an account's jobs will end the billing period, and how well the method does on
histories whose truth is known (--backtest)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from services.cli.common import checked_settings, console, errors, with_resources
from services.devtools.bench.forecast_backtest import KINDS, POINTS, backtest
from services.ledger.forecasts import period_forecast


def forecast(
    account: Annotated[str | None, typer.Argument(help="the account to forecast (over its billing period)")] = None,
    run_backtest: Annotated[bool, typer.Option("--backtest", help="score the method on generated histories")] = False,
    runs: Annotated[int, typer.Option(min=1, help="generated periods per kind and point (--backtest)")] = 200,
    seed: Annotated[int, typer.Option(help="random seed of the generated histories (--backtest)")] = 17,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """The account's jobs and charge at the end of its billing period, with a 90 % interval; or, with --backtest,
    the method's error."""
    if run_backtest:
        _backtest(runs, seed, as_json)
    elif account is None:
        errors.print("[red]name an ACCOUNT to forecast, or pass --backtest to score the method[/red]")
        raise typer.Exit(2)
    else:
        _account(account, as_json)


def _account(account: str, as_json: bool) -> None:
    checked_settings()
    document = with_resources(lambda res: period_forecast(res, account, datetime.now(UTC)))
    if as_json:
        print(json.dumps(document, indent=2))
        return
    period = document["period"]
    console.print(
        f"{account}, {period['start'][:10]} → {period['end'][:10]} UTC: [bold]{document['jobs_to_date']:,}[/bold] "
        f"jobs so far, [bold]{document['forecast_jobs']:,}[/bold] forecast "
        f"({document['forecast_low']:,} – {document['forecast_high']:,})"
    )
    if document["included_jobs"] is not None:
        console.print(f"included: {document['included_jobs']:,} jobs; forecast overage: "
                      f"{document['forecast_overage_jobs']:,} jobs")
    if (money := document["forecast_charge"]) is not None:
        console.print(f"forecast charge: {money['amount']:,} {money['currency'].upper()} (minor units)")


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
        table.add_column(f"width {at:.0%}", justify="right")
    by_cell = {(s.kind, s.at): s for s in scores}
    for kind in KINDS:
        cells = [by_cell[kind, at] for at in POINTS]
        table.add_row(kind, *(text for s in cells for text in (f"{s.mape:.1f} %", f"{s.coverage:.0%}",
                                                                f"{s.width:.0f} %")))
    console.print(table)
