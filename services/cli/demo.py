"""`jobmeter demo`: the engine end to end on a generated workload through the sample gateway, then the console."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import Annotated

import typer
from rich import box
from rich.status import Status
from rich.table import Table

from jobmeter.logs import configure_logging
from jobmeter.settings import Settings, get_settings
from services.cli.common import console
from services.devtools.demo import DemoEngine, DemoResult, demo_engine, overrides, run_workload
from services.devtools.sandbox import open_sandbox
from services.devtools.stack import up
from services.ledger.channels import AccountChannels
from services.platform.serving import free_port

DEMO_DATABASE = "jobmeter_demo"


def demo(
    once: Annotated[bool, typer.Option("--once", help="exit after the summary (exit 1 if a check failed)")] = False,
    port: Annotated[int, typer.Option(help="HTTP port of the engine and its console")] = 8080,
    accounts: Annotated[int, typer.Option(min=6, help="how many customers to generate")] = 50,
) -> None:
    """Start the stack, the engine with every consumer and the sample gateway; drive a generated workload through
    the gateway over HTTP; print what was billed where; keep the console up until Ctrl-C."""
    console.rule("jobmeter demo")
    with console.status("starting the local stack (Kafka, Postgres, stripe-mock)…"):
        up(quiet=True)
    get_settings.cache_clear()
    if "LOG_LEVEL" not in os.environ:
        configure_logging("WARNING")  # the progress lines tell the story; a line per meter report would drown it
    settings = asyncio.run(open_sandbox(get_settings(), DEMO_DATABASE, **overrides()))
    console.print(f"fresh database [bold]{DEMO_DATABASE}[/bold], topics prefixed "
                  f"[bold]{settings.jobmeter_topic_prefix}[/bold]")
    if not _free(port):
        port = free_port()
        console.print(f"[yellow]the port asked for is taken; serving on {port}[/yellow]")
    try:
        passed = asyncio.run(_run(settings, port, accounts, once))
    except KeyboardInterrupt:
        console.print("stopped")
        return
    raise typer.Exit(0 if passed else 1)


async def _run(settings: Settings, port: int, accounts: int, once: bool) -> bool:
    with console.status("starting the engine (every consumer) and the sample gateway…") as status:
        async with demo_engine(settings, port=port) as engine:
            console.print(f"engine at [bold]{engine.url}[/bold], sample gateway at [bold]{engine.gateway_url}"
                          "[/bold]")
            result = await run_workload(engine, accounts=accounts, progress=_steps(status))
            status.stop()
            summary(result)
            if not once:
                _serving(engine)
                await asyncio.Event().wait()  # until Ctrl-C
    return result.passed


def _steps(status: Status) -> Callable[[str], None]:
    def step(text: str) -> None:
        console.print(f"[dim]•[/dim] {text}")
        status.update(f"{text}…")

    return step


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _serving(engine: DemoEngine) -> None:
    token = engine.settings.jobmeter_admin_token.get_secret_value()
    console.print(f"\nthe console: [bold]{engine.url}/console[/bold] — log in with the admin token "
                  f"[bold]{token}[/bold]; the gateway stays at {engine.gateway_url}. Ctrl-C to stop.")


def _fig(value: int | None) -> str:
    return "–" if value is None else str(value)


def _billed(a: AccountChannels) -> tuple[str, str]:
    """What the account's own channel billed, and which channel that is."""
    if a.model == "payg":
        return _fig(a.payg_debits), "PAYG debits"
    if a.model == "rapidapi":
        return _fig(a.rapidapi_declared), "RapidAPI"
    return _fig(a.stripe_sent), "Stripe meter"


def summary(result: DemoResult) -> None:
    channels = Table(title=f"the ledger beside what each channel billed, {result.period}", box=box.SIMPLE_HEAD)
    for column in ("account", "channel", "ledger", "billed", "by", "reported", ""):
        channels.add_column(column, justify="right" if column in ("ledger", "billed", "reported") else "left",
                            no_wrap=column == "account")
    for a in result.channels:
        billed, by = _billed(a)
        channel = "rapidapi" if a.ledger_rapidapi and not a.ledger_direct else "direct"
        flag = "[green]✓[/green]" if not a.differences else "[red]✗[/red]"
        channels.add_row(a.account_id, channel, str(a.ledger_jobs), billed, by, _fig(a.rapidapi_reported), flag)
    console.print(channels)
    for a in result.channels:
        if a.differences:
            console.print(f"[red]✗[/red] {a.account_id}: {'; '.join(a.differences)}")
    ledger = Table(title="the ledger: jobs per API surface and channel", box=box.SIMPLE_HEAD)
    for column in ("api", "channel", "jobs"):
        ledger.add_column(column, justify="right" if column == "jobs" else "left")
    for row in result.ledger_rows:
        ledger.add_row(row["api"], row["channel"], str(row["jobs"]))
    ledger.add_row("[bold]total[/bold]", "", f"[bold]{result.ledger_total}[/bold]")
    console.print(ledger)
    console.rule("scenarios")
    for c in result.checks:
        console.print(f"{'[green]✓[/green]' if c.passed else '[red]✗[/red]'} [bold]{c.name}[/bold] — {c.detail}")
    verdict = "[green]every check passed[/green]" if result.passed else "[red]some checks failed[/red]"
    console.print(f"{len(result.completed)} jobs completed through the gateway; {verdict}")
