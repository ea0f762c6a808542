"""The `jobmeter` command line: one sub-command per area, each in a module of its own."""

from __future__ import annotations

import typer

from jobmeter.logs import configure_logging
from jobmeter.settings import get_settings
from services.cli import accounts, demo, docs, migrate, replay, report, run, stack

app = typer.Typer(no_args_is_help=True, add_completion=False, help="jobmeter: jobs in, billing out.")


@app.callback()
def _setup() -> None:
    configure_logging(get_settings().log_level)

app.add_typer(stack.app, name="stack", help="Start, stop and inspect the local stack (Kafka, Postgres, stripe-mock).")
app.add_typer(migrate.app, name="migrate", help="Move billing history between models: what page → job billing changes.")

app.command("run")(run.run)
app.command("replay")(replay.replay)
app.command("demo")(demo.demo)
app.add_typer(docs.app, name="docs", help="Documents generated from the code (AsyncAPI).")
app.add_typer(accounts.app, name="accounts", help="Register accounts and look them up.")
app.add_typer(report.app, name="report", help="Usage reports from the ledger.")


if __name__ == "__main__":
    app()
