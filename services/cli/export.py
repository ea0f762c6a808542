"""`jobmeter export jobs --since … --until … --format jsonl|csv|parquet [--output FILE]`: the job log for analysts.

Rows go to stdout (jsonl, csv) or to --output; the progress bar and the summary go to stderr, so a pipe
(`jobmeter export jobs | duckdb …`) receives nothing but rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console

from jobmeter.settings import get_settings
from projections.log import LogError
from services.cli.replay import parse_time, progress_bar
from services.ledger.export import CsvSink, ExportSummary, JsonLinesSink, ParquetSink, RowSink, export_jobs

app = typer.Typer(help="Stream the event log to files for analysts.", no_args_is_help=True)
err = Console(stderr=True)


class Format(StrEnum):
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


@app.command()
def jobs(
    since: Annotated[
        datetime | None, typer.Option(parser=parse_time, help="RFC 3339; jobs logged at or after it.")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(parser=parse_time, help="RFC 3339; jobs logged before it (default: now).")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.jsonl,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (required for parquet; else stdout).")
    ] = None,
    row_group_rows: Annotated[int, typer.Option(min=1, help="Parquet rows per row group.")] = 50_000,
) -> None:
    """One row per JobCompleted: event_id, the job's fields, and the log time. Duplicates share event_id."""
    if fmt is Format.parquet and output is None:
        raise typer.BadParameter("parquet is binary: give --output FILE", param_hint="--output")
    if since and until and since >= until:
        raise typer.BadParameter(f"--since {since.isoformat()} is not before --until {until.isoformat()}")
    with contextlib.ExitStack() as files:
        sink: RowSink
        if fmt is Format.parquet:
            assert output is not None
            sink = ParquetSink(output, row_group_rows=row_group_rows)
        else:
            stream: TextIO = sys.stdout if output is None else files.enter_context(output.open("w", newline=""))
            sink = CsvSink(stream) if fmt is Format.csv else JsonLinesSink(stream)
        try:
            with progress_bar("exporting jobs") as update:
                summary = asyncio.run(export_jobs(get_settings(), sink, since=since, until=until, progress=update))
        except LogError as error:
            err.print(f"[red]error:[/red] {error}")
            raise typer.Exit(2) from None
        finally:
            sink.close()
    report(summary, output)


def report(summary: ExportSummary, output: Path | None) -> None:
    where = f" to {output}" if output else ""
    err.print(f"exported {summary.rows} jobs{where} ({summary.read} records read)")
    if summary.outside_window:
        err.print(f"  {summary.outside_window} records in range but logged outside the window (producer clocks)")
    if summary.other_events:
        err.print(f"  {summary.other_events} records of other event types, not exported")
    if summary.skipped:
        err.print(f"  [yellow]{summary.skipped} bad records skipped[/yellow] (already in the dead-letter topic):")
        for reason, count in summary.bad.most_common():
            err.print(f"    {count} × {reason}")
