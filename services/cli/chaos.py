"""`jobmeter chaos`: faults injected across the whole pipeline, then the invariants, checked and printed."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.table import Table

from jobmeter.settings import get_settings
from services.cli.common import console, errors
from services.devtools.chaos.runner import ChaosReport, Scenario
from services.devtools.sandbox import close_sandbox, open_sandbox
from services.devtools.stack import up


def chaos(
    minutes: Annotated[float, typer.Option(help="how long the workload and the faults run")] = 1.5,
    as_json: Annotated[bool, typer.Option("--json", help="one key per invariant, with its figures")] = False,
    keep: Annotated[bool, typer.Option(help="keep the run's database and topics for inspection")] = False,
) -> None:
    """Drive traffic through ingest while killing and restarting every consumer, the HTTP app, Kafka,
    Postgres and stripe-mock; exit non-zero if any invariant fails."""
    up(quiet=True)
    get_settings.cache_clear()
    report = asyncio.run(_run(minutes * 60, keep, quiet=as_json))
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        table = Table(title="chaos invariants")
        for column in ("invariant", "holds", "figures"):
            table.add_column(column)
        for inv in report.invariants:
            figures = ", ".join(f"{k}={v}" for k, v in inv.figures.items())
            table.add_row(inv.name, "[green]yes[/green]" if inv.holds else "[red]NO[/red]", figures)
        console.print(table)
        console.print(f"faults: {', '.join(report.faults)}")
    if not report.ok:
        raise typer.Exit(1)


async def _run(seconds: float, keep: bool, *, quiet: bool) -> ChaosReport:
    base = get_settings()
    sandbox = await open_sandbox(base, jobmeter_batch_timeout_ms=100)
    try:
        log = (lambda _: None) if quiet else (lambda line: errors.print(f"[yellow]{line}[/yellow]"))
        return await Scenario(sandbox, seconds=seconds, log=log).run_scenario()
    finally:
        if not keep:
            await close_sandbox(base, sandbox)
