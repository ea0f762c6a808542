"""`jobmeter simulate webhook`: a realistic Stripe event, signed with the webhook secret, posted to the bridge."""

from __future__ import annotations

import json
from typing import Annotated

import httpx
import typer

from jobmeter.settings import get_settings
from services.cli.common import errors
from services.stripe_fixtures import EVENT_TYPES, build_event, encode_event
from services.webhooks import sign

app = typer.Typer(no_args_is_help=True)


@app.command()
def webhook(
    event_type: Annotated[str, typer.Argument(help=f"one of: {', '.join(EVENT_TYPES)}")],
    customer: Annotated[str, typer.Option(help="the Stripe customer, cus_…")],
    final: Annotated[bool, typer.Option(help="payment_failed: the last attempt (no further retry)")] = False,
    status: Annotated[str | None, typer.Option(help="subscription events: the new status")] = None,
    url: Annotated[str | None, typer.Option(help="the bridge (default http://127.0.0.1:PORT/webhooks/stripe)")] = None,
    show: Annotated[bool, typer.Option(help="print the event sent")] = False,
) -> None:
    """Build, sign and post a Stripe event; exit 1 unless the bridge accepted it."""
    settings = get_settings()
    try:
        event = build_event(event_type, customer, final=final, status=status)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    body = encode_event(event)
    target = url or f"http://127.0.0.1:{settings.jobmeter_http_port}/webhooks/stripe"
    headers = {"Stripe-Signature": sign(body, settings.stripe_webhook_secret.get_secret_value()),
               "Content-Type": "application/json"}
    if show:
        print(json.dumps(event, indent=2))
    try:
        response = httpx.post(target, content=body, headers=headers, timeout=30)
    except httpx.HTTPError as error:
        errors.print(f"[red]could not post to {target}:[/red] {error}")
        raise typer.Exit(1) from None
    print(json.dumps({"id": event["id"], "type": event_type, "status": response.status_code,
                      "response": _body(response)}))
    if response.status_code != 200:
        raise typer.Exit(1)


def _body(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text
