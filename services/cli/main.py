"""The `jobmeter` command line: one sub-command per area, each in a module of its own."""

from __future__ import annotations

import typer

from services.cli import accounts, migrate, report, run, stack

app = typer.Typer(no_args_is_help=True, add_completion=False, help="jobmeter: jobs in, billing out.")
app.add_typer(stack.app, name="stack", help="Start, stop and inspect the local stack (Kafka, Postgres, stripe-mock).")
app.add_typer(migrate.app, name="migrate", help="Move billing history between models: what page → job billing changes.")

app.command("run")(run.run)
app.add_typer(accounts.app, name="accounts", help="Register accounts and look them up.")
app.add_typer(report.app, name="report", help="Usage reports from the ledger.")


if __name__ == "__main__":
    app()
