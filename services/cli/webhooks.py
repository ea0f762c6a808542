"""`jobmeter webhooks`: endpoints that receive an account's events, signed, and what was delivered to them; and the
alert emails, the alerts' other channel. An endpoint's secret is printed once, when it is added."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from projections.webhooks.types import known_types
from services.cli.common import Format, console, emit_rows, errors, with_resources
from services.webhooks.commands import (
    WebhookCommandError,
    add_endpoint,
    list_alert_mails,
    list_deliveries,
    list_endpoints,
    remove_endpoint,
)

app = typer.Typer(no_args_is_help=True)


def _refuse(error: WebhookCommandError) -> typer.Exit:
    errors.print(f"[red]refused:[/red] {error}")
    return typer.Exit(2)


@app.command()
def add(
    account_id: Annotated[str, typer.Argument(help="the account whose events it receives")],
    url: Annotated[str, typer.Option(help="the http(s) URL deliveries are POSTed to")],
    events: Annotated[list[str] | None, typer.Option(
        "--events", help=f"a type it receives (repeatable or comma-separated; default: all): {', '.join(known_types())}"
    )] = None,
    as_json: Annotated[bool, typer.Option("--json", help='print {"id", "secret"} as JSON')] = False,
) -> None:
    """Add an endpoint and print its signing secret (once)."""
    types = [t.strip() for item in events or [] for t in item.split(",") if t.strip()]
    try:
        new = with_resources(lambda res: add_endpoint(res, account_id, url, types))
    except WebhookCommandError as error:
        raise _refuse(error) from None
    if as_json:
        print(json.dumps({"id": new.endpoint_id, "secret": new.secret}))
        return
    console.print(f"[bold]{new.secret}[/bold]")
    errors.print(f"endpoint {new.endpoint_id} for {account_id} → {url}: its signing secret is shown once, store it "
                 "now (docs/webhooks.md says how to verify a delivery).")
    if not new.folded:
        errors.print("the webhooks consumer has not applied it yet (is `jobmeter run webhooks` or `run all` running?)")


@app.command("list")
def list_(
    account_id: Annotated[str, typer.Argument(help="the account")],
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """The account's endpoints (removed ones too), never their secrets."""
    emit_rows(with_resources(lambda res: list_endpoints(res, account_id)), fmt, title="webhook endpoints")


@app.command()
def remove(endpoint_id: str) -> None:
    """Remove an endpoint for good: nothing more is sent to it, and its pending retries are cancelled."""
    try:
        row = with_resources(lambda res: remove_endpoint(res, endpoint_id))
    except WebhookCommandError as error:
        raise _refuse(error) from None
    print(json.dumps(row, indent=2))


@app.command()
def deliveries(
    account_id: Annotated[str, typer.Argument(help="the account")],
    limit: Annotated[int, typer.Option(min=1, help="the newest this many")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="a JSON list on stdout")] = False,
) -> None:
    """The account's deliveries, newest first: state, attempts, last status or error, next attempt."""
    rows = with_resources(lambda res: list_deliveries(res, account_id, limit))
    emit_rows(rows, Format.json if as_json else Format.table, title="webhook deliveries")


@app.command()
def mails(
    account_id: Annotated[str, typer.Argument(help="the account")],
    limit: Annotated[int, typer.Option(min=1, help="the newest this many")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="a JSON list on stdout")] = False,
) -> None:
    """The account's alert emails, newest first: which alert, to whom and when it went, attempts, last error."""
    rows = with_resources(lambda res: list_alert_mails(res, account_id, limit))
    emit_rows(rows, Format.json if as_json else Format.table, title="alert emails")
