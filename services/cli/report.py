"""`jobmeter report`: what the ledger says, for finance and product."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from projections.ledger.queries import BadQuery, Usage, late_jobs, parse_group_by, usage
from services.cli.channels import channels
from services.cli.common import Format, console, emit_rows, errors, with_resources
from services.ledger.periods import month_start, next_month
from services.platform.resources import Resources

app = typer.Typer(no_args_is_help=True)
app.command("channels")(channels)


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command("usage")
def usage_report(
    account: Annotated[str | None, typer.Option(help="one account; all accounts when omitted")] = None,
    start: Annotated[str | None, typer.Option("--from", help="RFC 3339, whole hour (default: this month)")] = None,
    end: Annotated[str | None, typer.Option("--to", help="RFC 3339, whole hour (default: end of month)")] = None,
    group_by: Annotated[str, typer.Option(help="comma list of account,api,channel,hour,day,month")] = "api,channel",
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Jobs per group in a window: the same figures as GET /v1/accounts/{id}/usage."""
    begin = _when(start) or month_start(datetime.now(UTC))
    finish = _when(end) or next_month(begin)
    groups = parse_group_by(group_by if account else f"account,{group_by}")

    async def work(res: Resources) -> Usage:
        async with res.pool_for("ledger").acquire() as conn:
            return await usage(conn, account, begin, finish, groups)

    try:
        result = with_resources(work)
    except BadQuery as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    if fmt is Format.json:
        print(json.dumps(result.as_json(), indent=2))
        return
    emit_rows(result.as_json()["groups"], fmt, title=f"jobs {begin:%Y-%m-%d %H:%M} → {finish:%Y-%m-%d %H:%M} UTC")
    if fmt is Format.table:
        console.print(f"total: [bold]{result.total}[/bold]")


@app.command("late")
def late_report(
    start: Annotated[str, typer.Option("--from", help="period start, RFC 3339")],
    end: Annotated[str, typer.Option("--to", help="period end, RFC 3339")],
    after: Annotated[str | None, typer.Option(help="when the period was reported (default: its end)")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Jobs of a period that reached the log after it was reported: what changed since."""
    begin, finish = datetime.fromisoformat(start), datetime.fromisoformat(end)
    cutoff = _when(after) or finish

    async def work(res: Resources) -> list[dict[str, Any]]:
        async with res.pool_for("ledger").acquire() as conn:
            return await late_jobs(conn, begin, finish, cutoff)

    emit_rows(with_resources(work), fmt, title=f"jobs logged after {cutoff:%Y-%m-%d %H:%M} UTC")
