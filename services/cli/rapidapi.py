"""`jobmeter rapidapi`: import RapidAPI's usage exports and reconcile its numbers with ours."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from services.cli.common import Format, console, emit_rows, errors, with_resources
from services.rapidapi.importer import ExportError, ImportResult, import_export
from services.rapidapi.reconcile import MonthReconciled, reconcile_month

app = typer.Typer(no_args_is_help=True)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="quotas.csv (or .json) from RapidAPI")],
    period: Annotated[str | None, typer.Option(help="YYYY-MM, for rows without a period column")] = None,
) -> None:
    """Put an export's rows on the rapidapi topic; unreadable rows are listed (exit 1), the rest imported."""
    try:
        result: ImportResult = with_resources(lambda res: import_export(res, file, period))
    except (ExportError, ValueError) as error:
        errors.print(f"[red]cannot import {file.name}:[/red] {error}")
        raise typer.Exit(2) from None
    console.print(f"{result.source_file} (sha256 {result.digest[:12]}…): {result.published} row(s) imported, "
                  f"{len(result.errors)} rejected")
    if result.errors:
        for e in result.errors:
            errors.print(f"  line {e.line}: {e.reason}")
        raise typer.Exit(1)


@app.command()
def reconcile(
    period: Annotated[str, typer.Option(help="the month, YYYY-MM")],
    tolerance: Annotated[str | None, typer.Option(help="override RAPIDAPI_RECONCILE_TOLERANCE: 2, 0.5% or 2,0.5%")]
    = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
    record: Annotated[bool, typer.Option(help="publish each discrepancy as an event (once per figures)")] = True,
) -> None:
    """Compare, per marketplace user, the ledger's jobs, the units we declared and what RapidAPI reported."""
    try:
        result: MonthReconciled = with_resources(
            lambda res: reconcile_month(res, period, tolerance=tolerance, record=record)
        )
    except ValueError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    rows: list[dict[str, Any]] = [
        {"period": d.period, "rapidapi_user": d.rapidapi_user, "account_id": d.account_id or "(unknown)",
         "ledger_jobs": d.ledger_jobs, "declared_units": d.declared_units, "reported_units": d.reported_units,
         "kind": d.kind}
        for d in result.discrepancies
    ]
    emit_rows(rows, fmt, title=f"RapidAPI discrepancies {period}")
    if fmt is Format.table:
        if not result.export_imported:
            console.print(f"[yellow]no RapidAPI export for {period} yet: only ledger vs declared compared[/yellow]")
        console.print(f"{len(result.users)} marketplace user(s), {len(result.discrepancies)} discrepancy(ies), "
                      f"{result.newly_recorded} newly recorded")
