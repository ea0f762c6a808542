"""`jobmeter keys`: create, list, revoke and rotate API keys. A secret is printed once, at creation."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from services.cli.common import Format, console, emit_rows, errors, with_resources
from services.keys.commands import KeyCommandError, NewKey, create_key, list_keys, revoke_key, rotate_key

app = typer.Typer(no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON (the secret under `key`)")]


def _show_new(key: NewKey, as_json: bool) -> None:
    if as_json:
        print(json.dumps(key.as_json(), indent=2))
        return
    console.print(f"[bold]{key.key}[/bold]")
    errors.print(f"key {key.key_id} for {key.account_id}: shown once, store it now.")
    if not key.folded:
        errors.print("the key store has not applied it yet (is `jobmeter run keys` or `run all` running?)")


def _refuse(error: KeyCommandError) -> typer.Exit:
    errors.print(f"[red]refused:[/red] {error}")
    return typer.Exit(2)


@app.command()
def create(
    account_id: Annotated[str, typer.Argument(help="the account the key belongs to")],
    as_json: JsonFlag = False,
) -> None:
    """Issue a key for an account and print its secret (once)."""
    try:
        key = with_resources(lambda res: create_key(res, account_id))
    except KeyCommandError as error:
        raise _refuse(error) from None
    _show_new(key, as_json)


@app.command("list")
def list_(
    account: Annotated[str | None, typer.Option(help="only this account's keys")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """List keys (prefix, state, every source holding the account and why), never their secrets."""
    emit_rows(with_resources(lambda res: list_keys(res, account)), fmt, title="API keys")


@app.command()
def revoke(
    key_id: str,
    reason: Annotated[str, typer.Option(help="why, for the record")] = "revoked by an operator",
) -> None:
    """Revoke a key for good."""
    try:
        key = with_resources(lambda res: revoke_key(res, key_id, reason))
    except KeyCommandError as error:
        raise _refuse(error) from None
    print(json.dumps(key, indent=2))


@app.command()
def rotate(key_id: str, as_json: JsonFlag = False) -> None:
    """Issue a new key for the same account, then revoke this one."""
    try:
        new, _ = with_resources(lambda res: rotate_key(res, key_id))
    except KeyCommandError as error:
        raise _refuse(error) from None
    _show_new(new, as_json)
