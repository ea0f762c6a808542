"""The `jobmeter` command line: one sub-command per area, each in a module of its own."""

from __future__ import annotations

import os

import typer

from jobmeter.logs import configure_logging
from services.cli import accounts, bench, chaos, demo, docs, export, init, pages_to_jobs, replay, report, run, stack
from services.cli import caps as caps_cli
from services.cli import deadletters as deadletters_cli
from services.cli import doctor as doctor_cli
from services.cli import forecast as forecast_cli
from services.cli import keys as keys_cli
from services.cli import payg as payg_cli
from services.cli import rapidapi as rapidapi_cli
from services.cli import simulate as simulate_cli
from services.cli import stripe as stripe_cli
from services.cli import subscriptions as subscriptions_cli
from services.cli import webhooks as webhooks_cli
from services.cli.common import checked_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="jobmeter: jobs in, billing out.")


# Commands that must work before there is a valid configuration: making one, the local stack, the documents;
# `forecast` checks for itself, since its --backtest reads no configuration.
UNCHECKED = {"init", "stack", "docs", "forecast"}


@app.callback()
def _setup(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand in UNCHECKED:
        configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
        return
    configure_logging(checked_settings().log_level)

app.add_typer(stack.app, name="stack", help="Start, stop and inspect the local stack (Kafka, Postgres, stripe-mock).")
app.add_typer(
    pages_to_jobs.app, name="migrate", help="Move billing history between models: what page → job billing changes."
)

app.command("init")(init.init)
app.command("run")(run.run)
app.command("replay")(replay.replay)
app.add_typer(export.app, name="export", help="Stream the event log to JSON lines, CSV or Parquet for analysts.")
app.command("demo")(demo.demo)
app.command("chaos")(chaos.chaos)
app.command("forecast")(forecast_cli.forecast)
app.add_typer(docs.app, name="docs", help="Documents generated from the code (AsyncAPI).")
app.add_typer(accounts.app, name="accounts", help="Register accounts and look them up.")
app.add_typer(report.app, name="report", help="Usage reports from the ledger.")
app.add_typer(keys_cli.app, name="keys", help="API keys: create, list, revoke, rotate.")
app.add_typer(caps_cli.app, name="caps", help="Usage caps per account: set, list, clear.")
app.add_typer(simulate_cli.app, name="simulate", help="Simulated traffic: signed Stripe webhooks, job traffic.")
app.add_typer(stripe_cli.app, name="stripe", help="Stripe: catalog sync, meter reports, reconciliation.")
app.add_typer(subscriptions_cli.app, name="subscriptions", help="Pro checkout, plan changes with proration, portal.")
app.add_typer(rapidapi_cli.app, name="rapidapi", help="RapidAPI: import usage exports, reconcile its numbers.")
app.add_typer(payg_cli.app, name="payg", help="Pay-as-you-go: balances, auto-recharge settings, top-ups.")
app.add_typer(deadletters_cli.app, name="deadletters", help="What consumers could not read or apply, with the reason.")
app.add_typer(webhooks_cli.app, name="webhooks", help="Outgoing webhooks: endpoints per account, signed deliveries.")
app.command("doctor")(doctor_cli.doctor)
app.add_typer(bench.app, name="bench", help="Ingest and ledger throughput, key-check latency, Stripe request counts.")


if __name__ == "__main__":
    app()
