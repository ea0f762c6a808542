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
from services.devtools.stack import StackError, up


def chaos(
    minutes: Annotated[float, typer.Option(help="how long the workload and the faults run")] = 1.5,
    as_json: Annotated[bool, typer.Option("--json", help="one key per invariant, with its figures, and the run's own "
                                                     "(kills, `broker_kills`, `rebalances`, …)")] = False,
    keep: Annotated[bool, typer.Option(help="keep the run's database and topics for inspection")] = False,
    brokers: Annotated[int, typer.Option(
        min=1, max=9, help="Kafka nodes: from 2 up, two instances of every consumer, SIGKILLs of the node leading "
        "the job partitions, and the ledger scaled from one instance to two and back under load (the JSON's "
        "`broker_kills` and `rebalances`; run it on a stack of its own: JOBMETER_STATE_DIR)")] = 1,
    stripe_faults: Annotated[float, typer.Option(
        min=1, help="seconds each Stripe fault lasts (500s, then requests held past the client's timeout)")] = 30.0,
) -> None:
    """Drive traffic through ingest while killing and restarting every consumer, the HTTP app, Kafka,
    Postgres and stripe-mock, and while Stripe answers 500 or times out for a while; then `jobmeter doctor`'s
    check; exit non-zero if any invariant fails."""
    try:
        up(quiet=True, brokers=brokers)
    except StackError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    get_settings.cache_clear()
    report = asyncio.run(_run(minutes * 60, keep, quiet=as_json, brokers=brokers, stripe_faults=stripe_faults))
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


async def _run(seconds: float, keep: bool, *, quiet: bool, brokers: int, stripe_faults: float) -> ChaosReport:
    base = get_settings()
    sandbox = await open_sandbox(base, jobmeter_batch_timeout_ms=100)
    try:
        log = (lambda _: None) if quiet else (lambda line: errors.print(f"[yellow]{line}[/yellow]"))
        return await Scenario(sandbox, seconds=seconds, brokers=brokers, stripe_fault_seconds=stripe_faults,
                              log=log).run_scenario()
    finally:
        if not keep:
            await close_sandbox(base, sandbox)
