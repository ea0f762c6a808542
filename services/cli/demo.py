"""`jobmeter demo`: the engine end to end on a generated workload, then the HTTP app kept up."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
import uvicorn
from rich.progress import Progress
from rich.table import Table

from jobmeter.settings import get_settings
from services.cli.common import console
from services.demo import DemoResult, run_demo
from services.http.app import create_app
from services.runtime import PROJECTION_SERVICES
from services.sandbox import open_sandbox
from services.stack import up

DEMO_DATABASE = "jobmeter_demo"


def demo(
    once: Annotated[bool, typer.Option("--once", help="exit after the summary instead of serving")] = False,
    port: Annotated[int, typer.Option(help="HTTP port to serve on")] = 8080,
) -> None:
    """Start the stack and every service, drive a generated workload through them, print what was billed."""
    console.rule("jobmeter demo")
    with console.status("starting the local stack (Kafka, Postgres, stripe-mock)…"):
        up(quiet=True)
    get_settings.cache_clear()
    # The demo's own database and topics, so each run's summary is that run's alone.
    settings = asyncio.run(open_sandbox(get_settings(), DEMO_DATABASE))
    prefix = settings.jobmeter_topic_prefix
    console.print(f"fresh database [bold]{DEMO_DATABASE}[/bold], topics prefixed [bold]{prefix}[/bold]")
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("ingesting jobs over HTTP", total=None)
        result = asyncio.run(
            run_demo(settings, port=port, progress=lambda n: bar.advance(task, n))
        )
    _summary(result)
    if not once:
        console.print(f"the engine keeps running at {result.address} — Ctrl-C to stop")
        app = create_app(settings, list(PROJECTION_SERVICES))
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _summary(result: DemoResult) -> None:
    ingest = Table(title="HTTP ingest")
    for key in ("accepted", "duplicates", "rejected"):
        ingest.add_column(key, justify="right")
    ingest.add_row(*(str(result.ingest[k]) for k in ("accepted", "duplicates", "rejected")))
    console.print(ingest)
    ledger = Table(title="the ledger: jobs per API surface, channel and billing model")
    for column in ("api", "channel", "model", "jobs"):
        ledger.add_column(column, justify="right" if column == "jobs" else "left")
    for row in result.ledger_rows:
        ledger.add_row(row["api"], row["channel"], row["model"], str(row["jobs"]))
    console.print(ledger)
    verdict = "[green]exact[/green]" if result.ledger_total == result.expected_total else "[red]MISMATCH[/red]"
    console.print(
        f"ledger total [bold]{result.ledger_total}[/bold] for {result.expected_total} distinct valid jobs sent "
        f"(HTTP + legacy normaliser): {verdict}"
    )
