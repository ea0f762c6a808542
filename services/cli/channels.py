"""`jobmeter report channels`: per account, the ledger's jobs beside what each channel billed."""

from __future__ import annotations

from typing import Annotated

import typer

from services.cli.common import Format, console, emit_rows, errors, with_resources
from services.ledger.channels import AccountChannels, channel_report

DASH = "–"  # the channel's store does not exist in this deployment, or does not bill this account


def channels(
    period: Annotated[str, typer.Option(help="the month, YYYY-MM")],
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """One metric across channels: jobs in the ledger vs Stripe sent, RapidAPI declared/reported, PAYG debited."""
    try:
        accounts: list[AccountChannels] = with_resources(lambda res: channel_report(res, period))
    except ValueError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    rows = [a.as_row() for a in accounts]
    if fmt is Format.table:
        rows = [{k: (DASH if v is None else v) for k, v in r.items()} for r in rows]
    emit_rows(rows, fmt, title=f"jobs by channel {period}")
    if fmt is Format.table:
        flagged = sum(1 for a in accounts if a.differences)
        console.print(f"{len(accounts)} account(s), {flagged} where a channel differs from the ledger")
