"""`jobmeter stripe`: the Stripe catalog, what the meter reporter sent (and sending refused reports again), and
reconciliation with Stripe."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Annotated

import typer

from events.envelope import utcnow
from jobmeter.settings import get_settings
from projections.db import transaction
from projections.meter.reconcile import CustomerUsage, Reconciled, our_figures, period_bounds, reconcile
from projections.meter.reports import (
    Report,
    acknowledge,
    expired_reports,
    reports_of_account,
    resend,
    window_jobs,
)
from projections.meter.windows import window_end
from services.cli.common import Format, console, emit_rows, errors, with_resources
from services.platform.resources import Resources
from services.stripe_adapter.catalog import ENV_NAMES, sync_catalog
from services.stripe_adapter.client import event_summaries, make_client

app = typer.Typer(no_args_is_help=True)


@app.command()
def sync() -> None:
    """Make sure Stripe has the jobs meter and the prices billing needs; print their IDs for the environment."""
    settings = get_settings()
    items = sync_catalog(make_client(settings), settings)
    for item in items:
        mark = "[green]ok[/green]" if not item.problems else "[red]check[/red]"
        console.print(f"{mark} {item.name:<12} {item.id} ({item.action})")
        for problem in item.problems:
            console.print(f"    [red]{problem}[/red]")
    console.print("\n# for .env")
    for item in items:
        print(f"{ENV_NAMES[item.name]}={item.id}")
    if any(item.problems for item in items):
        raise typer.Exit(1)


def report_row(report: Report) -> dict[str, object]:
    return {
        "window_start": report.window_start.isoformat(),
        "window_end": window_end(report.window_start, report.window_seconds).isoformat(),
        "seq": report.seq,
        "identifier": report.identifier,
        "state": report.state,
        "value": report.value,
        "attempts": report.attempts,
        "sent_at": report.sent_at.isoformat() if report.sent_at else None,
        "last_error": report.last_error,
    }


@app.command()
def reports(
    account: Annotated[str, typer.Option(help="the account whose meter reports to show")],
    as_json: Annotated[bool, typer.Option("--json", help="a JSON list instead of a table")] = False,
) -> None:
    """What the meter reporter recorded and sent to Stripe for one account, window by window."""

    async def work(res: Resources) -> list[Report]:
        async with transaction(res.pool_for("meter"), "meter") as conn:
            return await reports_of_account(conn, account)

    rows = [report_row(r) for r in with_resources(work)]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    emit_rows(rows, Format.table, title=f"meter reports of {account}")


@app.command("resend")
def resend_(
    account: Annotated[str | None, typer.Option(help="only this account's failed reports")] = None,
    identifier: Annotated[list[str] | None, typer.Option(help="only these reports (repeat the option)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="a JSON list of what was put back")] = False,
) -> None:
    """Send the reports Stripe refused (state failed) again, once their cause is fixed (a meter, a customer):
    the running sender (`jobmeter run meter`) takes them on its next pass, with their identifiers and values."""
    if account is None and not identifier:
        errors.print("[red]name an --account or one or more --identifier (every failed report: `jobmeter doctor`)"
                     "[/red]")
        raise typer.Exit(2)

    async def work(res: Resources) -> list[Report]:
        async with transaction(res.pool_for("meter"), "meter") as conn:
            return await resend(conn, account, identifier or [], utcnow())

    rows = [report_row(r) for r in with_resources(work)]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("no failed meter report matched: nothing to send again")
        return
    emit_rows(rows, Format.table, title=f"{len(rows)} meter report(s) back in line for the sender")


@app.command()
def expired(
    account: Annotated[str | None, typer.Option(help="only this account's")] = None,
    jobs: Annotated[bool, typer.Option("--jobs", help="with the jobs of each window (api:job_id)")] = False,
    every: Annotated[bool, typer.Option("--all", help="acknowledged ones too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="a JSON list instead of a table")] = False,
) -> None:
    """Meter reports that can no longer be sent (windows older than the 35 days Stripe takes), with the reason:
    bill their jobs by hand (an invoice item), then `jobmeter stripe acknowledge IDENTIFIER --note …`."""

    async def work(res: Resources) -> list[dict[str, object]]:
        async with transaction(res.pool_for("meter"), "meter") as conn:
            found = await expired_reports(conn, account, acknowledged=every)
            rows = []
            for r in found:
                row: dict[str, object] = {"account_id": r.account_id, "customer_id": r.customer_id,
                                          **report_row(r), "reason": r.last_error,
                                          "acknowledged": r.acknowledged_note if r.acknowledged_at else None}
                if jobs:
                    # The fold records a job's window, not its sequence number: a window sent in several reports
                    # lists all its jobs under each.
                    row["jobs"] = [f"{api}:{job}" for api, job in await window_jobs(conn, r.customer_id,
                                                                                    r.window_start)]
                rows.append(row)
            return rows

    rows = with_resources(work)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("no expired meter report" + ("" if every else " waiting to be billed by hand"))
        return
    shown = [{**r, "jobs": " ".join(map(str, j))} if isinstance(j := r.get("jobs"), list) else r for r in rows]
    emit_rows(shown, Format.table, title=f"{len(rows)} expired meter report(s)")


@app.command("acknowledge")
def acknowledge_(
    identifier: Annotated[list[str], typer.Argument(help="the expired reports' identifiers")],
    note: Annotated[str, typer.Option(help="how the jobs were billed, e.g. the invoice item's id")],
    as_json: Annotated[bool, typer.Option("--json", help="a JSON list of what was acknowledged")] = False,
) -> None:
    """Record that expired reports were billed by hand: they leave `jobmeter doctor`. Exit 1 if an identifier
    named no expired report waiting for it (unknown, not expired, or acknowledged already)."""

    async def work(res: Resources) -> list[Report]:
        async with transaction(res.pool_for("meter"), "meter") as conn:
            return await acknowledge(conn, identifier, note, utcnow())

    done = with_resources(work)
    rows = [report_row(r) for r in done]
    if as_json:
        print(json.dumps(rows, indent=2))
    elif rows:
        emit_rows(rows, Format.table, title=f"{len(rows)} expired meter report(s) acknowledged")
    missed = sorted(set(identifier) - {r.identifier for r in done})
    if missed:
        errors.print(f"[red]no expired report waiting to be acknowledged:[/red] {', '.join(missed)}")
        raise typer.Exit(1)


def with_stripe(figures: list[CustomerUsage], meter_id: str, start: datetime, end: datetime) -> list[CustomerUsage]:
    client = make_client(get_settings())
    return [replace(u, stripe=event_summaries(client, meter_id, u.customer_id, start, end)) for u in figures]


@app.command("reconcile")
def reconcile_(
    period: Annotated[str, typer.Option(help="YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH, in UTC")],
    account: Annotated[str | None, typer.Option(help="one account; every subscription account when omitted")] = None,
    stripe: Annotated[bool, typer.Option(help="ask Stripe's meter summaries (needs STRIPE_METER_ID)")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compare the ledger, the meter outbox and Stripe's meter summaries per customer; exit 1 on any difference."""
    try:
        start, end = period_bounds(period)
    except ValueError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    settings = get_settings()
    if stripe and not settings.stripe_meter_id:
        errors.print("[red]STRIPE_METER_ID is not set[/red]: run `jobmeter stripe sync`, or pass --no-stripe")
        raise typer.Exit(2)

    async def work(res: Resources) -> list[CustomerUsage]:
        async with res.connections() as db:
            return await our_figures(db, start, end, account)

    figures = with_resources(work)
    if stripe and settings.stripe_meter_id:
        figures = with_stripe(figures, settings.stripe_meter_id, start, end)
    results = reconcile(figures)
    if as_json:
        print(json.dumps([r.as_json() for r in results], indent=2))
    else:
        show(results, f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC")
    if any(not r.ok for r in results):
        raise typer.Exit(1)


def show(results: list[Reconciled], title: str) -> None:
    rows = [{k: v for k, v in r.as_json().items() if k != "differences"} for r in results]
    emit_rows(rows, Format.table, title=f"reconciliation {title}")
    for r in results:
        for difference in r.differences:
            console.print(f"[red]{r.usage.account_id} ({r.usage.customer_id})[/red]: {difference}")
