"""`jobmeter caps`: set, list and clear an account's usage caps (events on the bus, folded by `run caps`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from services.cli.common import Format, emit_rows, errors, with_resources
from services.keys import caps

app = typer.Typer(no_args_is_help=True)

Api = Annotated[str | None, typer.Option("--api", help="count only this API surface (default: every one)")]


def _refuse(error: caps.CapCommandError) -> typer.Exit:
    errors.print(f"[red]refused:[/red] {error}")
    return typer.Exit(2)


@app.command("set")
def set_(
    account: Annotated[str, typer.Argument(help="the account")],
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="jobs per billing period")],
    api: Api = None,
    soft: Annotated[bool, typer.Option("--soft", help="alert only; the keys keep working")] = False,
    spend: Annotated[int | None, typer.Option("--spend", min=1, help="a spend cap too, in minor units")] = None,
) -> None:
    """Cap an account's jobs per billing period; a hard cap (the default) stops its keys once reached."""
    try:
        event = with_resources(lambda res: caps.set_cap(res, account, jobs, api=api, hard=not soft,
                                                        spend_minor=spend))
    except caps.CapCommandError as error:
        raise _refuse(error) from None
    print(json.dumps(caps.as_json(event), indent=2))


@app.command("list")
def list_(
    account: Annotated[str | None, typer.Option(help="only this account's caps")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """The caps in force, with each one's usage in the account's current period and whether it holds the keys."""
    emit_rows(with_resources(lambda res: caps.list_caps(res, account)), fmt, title="usage caps")


@app.command()
def clear(account: Annotated[str, typer.Argument(help="the account")], api: Api = None) -> None:
    """Take a cap away (the plan's default cap, if one is set, applies again to all jobs)."""
    try:
        event = with_resources(lambda res: caps.clear_cap(res, account, api=api))
    except caps.CapCommandError as error:
        raise _refuse(error) from None
    print(json.dumps(caps.as_json(event), indent=2))
