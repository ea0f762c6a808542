"""The `jobmeter` command line: one sub-command per area, each in a module of its own."""

from __future__ import annotations

import typer

from services.cli import run, stack

app = typer.Typer(no_args_is_help=True, add_completion=False, help="jobmeter: jobs in, billing out.")
app.add_typer(stack.app, name="stack", help="Start, stop and inspect the local stack (Kafka, Postgres, stripe-mock).")

app.command("run")(run.run)


if __name__ == "__main__":
    app()
