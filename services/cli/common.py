"""What every CLI command shares: settings, resources opened for one command, and output formats."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jobmeter.settings import Settings, get_settings
from services.engine import settings_check
from services.engine.stores import STORES
from services.platform.resources import Resources, open_resources

T = TypeVar("T")
console = Console()
errors = Console(stderr=True)


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def checked_settings() -> Settings:
    """The settings, checked as every command that reads them needs them; exit 2 naming every problem."""
    try:
        return settings_check.load()
    except settings_check.ConfigurationError as error:
        errors.print(f"[red]jobmeter will not start:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None


def with_resources(work: Callable[[Resources], Awaitable[T]], *, producer: str = "jobmeter-cli") -> T:
    """Run one command's work with the pool and publisher open, and close them afterwards."""

    async def main() -> T:
        async with open_resources(get_settings(), producer=producer, stores=STORES) as res:
            return await work(res)

    return asyncio.run(main())


def emit_rows(rows: Sequence[dict[str, Any]], fmt: Format, *, title: str | None = None) -> None:
    """Rows as a rich table, CSV or JSON on stdout: the one way commands print tabular results."""
    if fmt is Format.json:
        print(json.dumps(list(rows), default=str, indent=2))
        return
    columns = list(rows[0]) if rows else []
    if fmt is Format.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if rows and isinstance(rows[0][column], int) else "left")
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    console.print(table if rows else f"[dim]{title or 'result'}: nothing to show[/dim]")
