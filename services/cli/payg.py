"""`jobmeter payg`: balances, recharge settings and top-ups of pay-as-you-go accounts."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from services.cli.common import Format, emit_rows, errors, with_resources
from services.payg import commands as payg

app = typer.Typer(no_args_is_help=True)


def _fail(error: payg.PaygError) -> typer.Exit:
    errors.print(f"[red]{error}[/red]")
    return typer.Exit(2 if error.status == 422 else 1)


@app.command()
def status(
    account: Annotated[str | None, typer.Option(help="one account in detail, with its recharges")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Balances, thresholds, auto-recharge state; with --account, that account's recharge history too."""
    if account is None:
        emit_rows(with_resources(payg.balances), fmt, title="pay-as-you-go balances")
        return
    try:
        shown = with_resources(lambda res: payg.balance(res, account))
    except payg.PaygError as error:
        raise _fail(error) from None
    if fmt is Format.json:
        print(json.dumps(shown, indent=2, default=str))
        return
    history = shown.pop("recharges")
    if fmt is Format.csv:
        emit_rows([shown], fmt)
        return
    emit_rows([{"field": k, "value": v} for k, v in shown.items()], fmt, title=f"{account}: balance")
    columns = ("seq", "amount_minor", "state", "payment_intent_id", "attempts", "failure_code", "requested_at")
    emit_rows([{c: r[c] for c in columns} for r in history], fmt, title=f"{account}: recharges")


@app.command()
def configure(
    account: Annotated[str, typer.Option(help="the PAYG account")],
    threshold: Annotated[int | None, typer.Option(help="recharge when the balance falls below this (minor units)")]
    = None,
    recharge: Annotated[int | None, typer.Option(help="how much each recharge adds (minor units)")] = None,
    auto: Annotated[bool | None, typer.Option("--auto/--no-auto", help="charge the saved card automatically")] = None,
    payment_method: Annotated[
        str | None, typer.Option(help="the saved card to charge (pm_…); a top-up through Checkout saves one")
    ] = None,
    customer: Annotated[str | None, typer.Option(help="the Stripe customer (cus_…) that owns the card")] = None,
) -> None:
    """Set how an account recharges (a PaygConfigured event; what is not given stays as it is)."""
    try:
        event = with_resources(lambda res: payg.configure(
            res, account, threshold_minor=threshold, recharge_minor=recharge, auto_recharge=auto,
            payment_method_id=payment_method, customer_id=customer,
        ))
    except payg.PaygError as error:
        raise _fail(error) from None
    print(json.dumps(event.model_dump(mode="json"), indent=2))


@app.command()
def topup(
    account: Annotated[str, typer.Option(help="the PAYG account")],
    amount: Annotated[int | None, typer.Option(help="minor units (default: STRIPE_PAYG_TOPUP_PRICE_ID's price)")]
    = None,
) -> None:
    """Open a one-time Checkout Session (or the Payment Link) that tops up the balance and saves the card."""
    try:
        opened = with_resources(lambda res: payg.open_topup(res, account, amount))
    except payg.PaygError as error:
        raise _fail(error) from None
    print(json.dumps(opened, indent=2))
