"""`jobmeter subscriptions`: Pro checkout, plan changes with a proration preview, the portal, an account's billing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import typer

from jobmeter.settings import get_settings
from projections.subscriptions.queries import NoSuchAccount, billing_summary
from services.accounts.commands import get_account
from services.cli.common import console, errors, with_resources
from services.platform.resources import Resources
from services.stripe_adapter.catalog import CURRENCY, OVERAGE_CENTS_PER_JOB
from services.stripe_adapter.client import make_client
from services.subscriptions.plans import (
    Behaviour,
    Plan,
    SubscriptionError,
    apply_change,
    checkout_session,
    current_subscription,
    payment_link,
    plan_price,
    plans,
    portal_session,
    preview_change,
)

app = typer.Typer(no_args_is_help=True)


def customer_of(account_id: str) -> str:
    account = with_resources(lambda res: get_account(res, account_id))
    if account is None:
        errors.print(f"[red]no account {account_id!r}[/red]")
        raise typer.Exit(1)
    if not account.get("stripe_customer_id"):
        errors.print(f"[red]{account_id} has no Stripe customer[/red]: link one with `jobmeter accounts`")
        raise typer.Exit(2)
    return str(account["stripe_customer_id"])


def fail(error: Exception) -> typer.Exit:
    errors.print(f"[red]{error}[/red]")
    return typer.Exit(2)


@app.command()
def checkout(
    account: Annotated[str, typer.Option(help="the account subscribing")],
    plan: Annotated[str, typer.Option(help="pro_monthly or pro_annual")] = "pro_monthly",
) -> None:
    """Start a Checkout Session for Pro (base + metered overage price); prints its URL, and the Payment Link."""
    settings = get_settings()
    customer = customer_of(account)
    try:
        session_id, url = checkout_session(make_client(settings), settings, account, customer, _plan(plan))
    except SubscriptionError as error:
        raise fail(error) from None
    print(json.dumps({"session_id": session_id, "url": url, "payment_link": payment_link(settings, account)}, indent=2))


def _plan(value: str) -> Plan:
    if value not in ("pro_monthly", "pro_annual"):
        raise typer.BadParameter("plan must be pro_monthly or pro_annual")
    return value  # type: ignore[return-value]


def _behaviour(value: str) -> Behaviour:
    if value not in ("create_prorations", "always_invoice", "none"):
        raise typer.BadParameter("behaviour must be create_prorations, always_invoice or none")
    return value  # type: ignore[return-value]


def _when(value: int | None) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC) if value else datetime.now(UTC).replace(microsecond=0)


@app.command()
def preview(
    subscription: Annotated[str, typer.Option(help="sub_…")],
    to: Annotated[str, typer.Option(help="the target plan: pro_monthly or pro_annual")],
    behaviour: Annotated[str, typer.Option(help="create_prorations, always_invoice or none")] = "create_prorations",
    proration_date: Annotated[int | None, typer.Option(help="unix time; pass the same to `change`")] = None,
) -> None:
    """What a plan change would invoice, before it is made."""
    settings = get_settings()
    client = make_client(settings)
    try:
        current = current_subscription(client, subscription)
        result = preview_change(client, current, plan_price(settings, _plan(to)), _behaviour(behaviour),
                                _when(proration_date))
    except SubscriptionError as error:
        raise fail(error) from None
    print(json.dumps(result.as_json(), indent=2))


@app.command()
def change(
    subscription: Annotated[str, typer.Option(help="sub_…")],
    to: Annotated[str, typer.Option(help="the target plan: pro_monthly or pro_annual")],
    behaviour: Annotated[str, typer.Option(help="create_prorations, always_invoice or none")],
    proration_date: Annotated[int, typer.Option(help="unix time, the one the preview used")],
) -> None:
    """Change the plan (upgrade, downgrade, monthly ↔ annual) with the chosen proration behaviour."""
    settings = get_settings()
    client = make_client(settings)
    try:
        current = current_subscription(client, subscription)
        updated = apply_change(client, current, plan_price(settings, _plan(to)), _behaviour(behaviour),
                               _when(proration_date))
    except SubscriptionError as error:
        raise fail(error) from None
    console.print(f"{updated.subscription_id}: {updated.status}, base price {updated.base_price_id}")


@app.command()
def portal(account: Annotated[str, typer.Option(help="the account whose customer opens the portal")]) -> None:
    """A Customer Portal session URL that returns to STRIPE_PORTAL_RETURN_URL."""
    settings = get_settings()
    print(portal_session(make_client(settings), settings, customer_of(account)))


@app.command()
def billing(account: Annotated[str, typer.Option(help="the account")]) -> None:
    """Included jobs, used, overage so far and its charge, in the current period (as GET /v1/accounts/{id}/billing)."""
    settings = get_settings()

    async def work(res: Resources) -> dict[str, Any] | None:
        async with res.connections() as db:
            return await billing_summary(db, account, plans(settings), Decimal(OVERAGE_CENTS_PER_JOB), CURRENCY)

    try:
        summary = with_resources(work)
    except NoSuchAccount:
        errors.print(f"[red]no account {account!r}[/red]")
        raise typer.Exit(1) from None
    if summary is None:
        errors.print(f"{account} has no Stripe subscription on record")
        raise typer.Exit(1)
    print(json.dumps(summary, indent=2))
