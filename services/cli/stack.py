"""`jobmeter stack up|down|status|env`: the local Kafka (one node or a cluster), Postgres and stripe-mock."""

from __future__ import annotations

import json
import shlex
from typing import Annotated

import typer
from rich.console import Console

from services.devtools.stack import StackError, manager

app = typer.Typer(help="Run the real local stack: Kafka, Postgres, stripe-mock.", no_args_is_help=True)
err = Console(stderr=True)


def _fail(exc: StackError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


@app.command()
def up(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing; fail with a message.")] = False,
    brokers: Annotated[
        int | None,
        typer.Option(
            min=1, max=manager.MAX_BROKERS,
            help="Kafka nodes (KRaft, broker and controller each). Default: the size the stack has, 1 at first.",
        ),
    ] = None,
) -> None:
    """Start what is not running (reuse what is), wait until healthy, write .jobmeter/stack.env."""
    try:
        manager.up(quiet=quiet, brokers=brokers)
    except StackError as exc:
        raise _fail(exc) from exc


@app.command()
def down(
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the data, logs and stack.env.")] = False,
) -> None:
    """Stop what `up` started; data stays unless --purge."""
    try:
        manager.down(purge=purge)
    except StackError as exc:
        raise _fail(exc) from exc
    err.print("stack stopped" + (" and purged" if purge else ""))


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Each server: role, state, address, pid.")] = False,
) -> None:
    """Show each service; exit 1 when any is down or not started."""
    rows = manager.status()
    if as_json:
        print(json.dumps(manager.status_json(rows), indent=2))
    else:
        manager.console().print(manager.table(rows))
    if not all(row.ok for row in rows):
        raise typer.Exit(1)


@app.command()
def env() -> None:
    """Print `export KEY=value` lines: eval "$(jobmeter stack env)"."""
    values = manager.read_env_file()
    if not values:
        err.print(f"[red]error:[/red] no {manager.env_file()}; run `jobmeter stack up` first")
        raise typer.Exit(1)
    for key, value in values.items():
        print(f"export {key}={shlex.quote(value)}")


if __name__ == "__main__":
    app()
