"""`jobmeter accounts`: register accounts and look them up."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from services.accounts.commands import AccountError, get_account, list_accounts, register_account, set_contact
from services.cli.common import Format, emit_rows, errors, with_resources

app = typer.Typer(no_args_is_help=True)


@app.command()
def create(
    account_id: Annotated[str, typer.Argument(help="the account's id, as upstream APIs send it")],
    model: Annotated[str, typer.Option(help="subscription, payg or rapidapi")] = "subscription",
    stripe_customer: Annotated[str | None, typer.Option(help="the Stripe customer (cus_…) it bills to")] = None,
    name: Annotated[str | None, typer.Option(help="a display name")] = None,
    email: Annotated[str | None, typer.Option(help="the contact its alerts are emailed to")] = None,
) -> None:
    """Register an account (an event on the bus, folded into the registry)."""
    try:
        account = with_resources(
            lambda res: register_account(res, account_id, model, stripe_customer_id=stripe_customer, display_name=name,
                                         contact_email=email)
        )
    except AccountError as error:
        errors.print(f"[red]cannot create account:[/red] {error}")
        raise typer.Exit(2) from None
    if account is None:
        errors.print(
            f"registered {account_id}; the accounts consumer has not applied it yet "
            "(is `jobmeter run accounts` or `jobmeter run all` running?)"
        )
        return
    print(json.dumps(account, indent=2))


@app.command()
def contact(
    account_id: str,
    email: Annotated[str | None, typer.Option(help="the address the account's alerts are emailed to")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="no address: alerts go to the billing inbox")] = False,
) -> None:
    """Set (or clear) the address an account's alerts are emailed to (an AccountContactSet event)."""
    if (email is not None) == clear:
        errors.print("give --email ADDRESS or --clear")
        raise typer.Exit(2)
    try:
        account = with_resources(lambda res: set_contact(res, account_id, None if clear else email))
    except AccountError as error:
        errors.print(f"[red]cannot set the contact:[/red] {error}")
        raise typer.Exit(2) from None
    if account is None:
        errors.print("published; the accounts consumer has not applied it yet (is `jobmeter run accounts` running?)")
        return
    print(json.dumps(account, indent=2))


@app.command("list")
def list_(
    model: Annotated[str | None, typer.Option(help="only this billing model")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """List registered accounts."""
    emit_rows(with_resources(lambda res: list_accounts(res, model)), fmt, title="accounts")


@app.command()
def show(account_id: str) -> None:
    """Show one account as JSON; exit 1 if there is none."""
    account = with_resources(lambda res: get_account(res, account_id))
    if account is None:
        errors.print(f"no account {account_id!r}")
        raise typer.Exit(1)
    print(json.dumps(account, indent=2))
