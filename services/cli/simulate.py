"""`jobmeter simulate`: signed Stripe webhooks posted to the bridge, and job traffic posted to ingest."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Annotated

import httpx
import typer
from rich.markup import escape

from jobmeter.settings import Settings, get_settings
from services.cli.common import errors
from services.devtools.chaos.workload import ClientBook, make_batch, post_until_answered
from services.stripe_adapter import simulation
from services.stripe_adapter.fixtures import EVENT_TYPES, build_event, encode_event
from services.stripe_adapter.webhooks import sign

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
    """Build, sign and post a Stripe event; exit 1 unless the bridge accepted it. Refused (exit 1, nothing
    posted) when STRIPE_SECRET_KEY is a live key."""
    settings = get_settings()
    refused = simulation.refusal(settings.stripe_secret_key.get_secret_value())
    if refused is not None:
        errors.print(f"[red]{escape(refused)}[/red]", soft_wrap=True)
        raise typer.Exit(1)
    try:
        event = build_event(event_type, customer, final=final, status=status,
                            event_id=simulation.simulated_event_id(simulation.CLI_PREFIX))
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


@app.command()
def jobs(
    count: Annotated[int, typer.Option(min=1, help="how many jobs")] = 1000,
    accounts: Annotated[int, typer.Option(min=1, help="spread over this many accounts (sim-0 … sim-N)")] = 10,
    bad_ratio: Annotated[float, typer.Option(min=0, max=1, help="share of invalid items, refused with a 4xx")] = 0.0,
    batch: Annotated[int, typer.Option(min=1, help="items per request")] = 200,
    url: Annotated[str | None, typer.Option(help="the engine (default http://127.0.0.1:PORT)")] = None,
) -> None:
    """Post generated job traffic to the ingest endpoint, retrying as a well-behaved client; print the tally."""
    settings = get_settings()
    book = asyncio.run(post_jobs(settings, count, accounts, bad_ratio, batch, url))
    print(json.dumps({"acknowledged": len(book.acknowledged), "refused": book.refused, "retries": book.retries}))


async def post_jobs(settings: Settings, count: int, accounts: int, bad_ratio: float, size: int,
                     url: str | None) -> ClientBook:
    rng = random.Random()  # traffic, not a secret
    names = [f"sim-{i}" for i in range(accounts)]
    run = uuid.uuid4().hex[:6]
    book = ClientBook()
    token = settings.jobmeter_ingest_token.get_secret_value()
    base = url or f"http://127.0.0.1:{settings.jobmeter_http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for serial, start in enumerate(range(0, count, size)):
            items = make_batch(rng, names, settings.jobmeter_apis, serial, size=min(size, count - start),
                               bad_ratio=bad_ratio, run=run)
            await post_until_answered(client, items, token, book, give_up_after=30)
    return book
