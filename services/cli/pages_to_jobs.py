"""`jobmeter migrate pages-to-jobs FILE`: what moving from page billing to job billing changes, for finance."""

from __future__ import annotations

import csv
import json
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.ledger.pages_to_jobs import (
    ImpactLine,
    Prices,
    RejectedRow,
    UnreadableFile,
    as_record,
    format_minor,
    impact,
    input_format_of,
    parse_price,
    tally,
    usage_rows,
)

app = typer.Typer(help="Move billing history from one model to another.", no_args_is_help=True)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class InputFormatOption(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


def _price(text: str) -> str:
    try:
        parse_price(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return text


def _currency(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", text.strip()):
        raise typer.BadParameter(f"{text!r} is not an ISO 4217 currency code, like usd")
    return text.strip().lower()


def _reject(row: RejectedRow) -> None:
    typer.echo(f"line {row.line}: {row.reason}", err=True)


@app.command("pages-to-jobs")
def pages_to_jobs(
    file: Annotated[Path, typer.Argument(help="Page usage: CSV with a header, or JSON lines (.jsonl).")],
    price_per_page: Annotated[
        str, typer.Option(callback=_price, help="Price of a page, decimal, major unit.")
    ] = "0.0040",
    price_per_job: Annotated[
        str, typer.Option(callback=_price, help="Price of a job, decimal, major unit.")
    ] = "0.0500",
    currency: Annotated[str, typer.Option(callback=_currency, help="ISO 4217 code of both prices.")] = "usd",
    output: Annotated[OutputFormat, typer.Option("--format", help="How to print the report.")] = OutputFormat.table,
    input_format: Annotated[
        InputFormatOption | None, typer.Option(help="Override the format guessed from the extension.")
    ] = None,
) -> None:
    """Pages, jobs, and what each billing model charges, per account and API, with the difference.

    Unreadable rows are listed on stderr with their line number and skipped; exit 2 when the file cannot
    be opened or has no usable header.
    """
    prices = Prices(parse_price(price_per_page), parse_price(price_per_job), currency)
    fmt = input_format.value if input_format else input_format_of(file)
    try:
        with usage_rows(file, fmt) as rows:
            totals = tally(rows, _reject)
    except UnreadableFile as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    lines, total = impact(totals, prices)
    typer.echo(f"read {totals.rows} rows, rejected {totals.rejected}", err=True)
    if output is OutputFormat.table:
        Console().print(_table(lines, total, prices))
    elif output is OutputFormat.csv:
        _csv([*lines, total], prices)
    else:
        report = {
            "currency": prices.currency,
            "price_per_page": str(prices.per_page),
            "price_per_job": str(prices.per_job),
            "rounding": "ROUND_HALF_EVEN to a minor unit, per account and API",
            "rows_read": totals.rows,
            "rows_rejected": totals.rejected,
            "lines": [as_record(line, prices) for line in lines],
            "total": as_record(total, prices),
        }
        typer.echo(json.dumps(report, indent=2))


def _csv(lines: list[ImpactLine], prices: Prices) -> None:
    records = [as_record(line, prices) for line in lines]
    writer = csv.DictWriter(sys.stdout, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)


def _table(lines: list[ImpactLine], total: ImpactLine, prices: Prices) -> Table:
    code = prices.currency.upper()
    table = Table(
        title=f"Page billing → job billing ({code}, {prices.per_page}/page, {prices.per_job}/job)",
        caption="difference = by job − by page; each line rounded half to even, the total is their sum",
    )
    # Short headings and no wrapping, so a typical account id fits whole in 80 columns.
    for name in ("account", "api"):
        table.add_column(name, no_wrap=True)
    for name in ("pages", "jobs", "by page", "by job", "difference"):
        table.add_column(name, justify="right", no_wrap=True)
    for line in lines:
        table.add_row(*_cells(line, prices))
    table.add_section()
    table.add_row(*_cells(total, prices), style="bold")
    return table


def _cells(line: ImpactLine, prices: Prices) -> list[str]:
    amounts = (line.page_billing, line.job_billing, line.difference)
    signed = [format_minor(a, prices.exponent) for a in amounts]
    signed[2] = ("+" if line.difference > 0 else "") + signed[2]
    return [line.account_id, line.api, f"{line.pages:,}", f"{line.jobs:,}", *signed]
