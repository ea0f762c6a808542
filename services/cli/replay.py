"""`jobmeter replay PROJECTION [--since TIME] [--verify] [--swap]`: rebuild a projection from the event log.

Exit codes: 0 done (and, with --verify, no differences); 1 the rebuild differs from live; 2 refused or failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from jobmeter.settings import Settings, get_settings
from projections import catalog
from projections.log import LogError
from projections.replay import replaying
from projections.replay.compare import Difference
from projections.replay.session import RebuildResult

out = Console()
err = Console(stderr=True)


def parse_time(value: str) -> datetime:
    """RFC 3339 with an explicit zone (`2026-05-01T00:00:00Z`): a time without one means nothing in a log."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an RFC 3339 time, e.g. 2026-05-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        raise typer.BadParameter(f"{value!r} has no time zone; add Z (UTC) or an offset like +02:00")
    return parsed


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (stdout stays the command's result); yields `update(done, total)`."""
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    # No redirection: `export` writes rows to the real stdout while the bar runs, and they must stay rows.
    with Progress(*columns, console=err, redirect_stdout=False, redirect_stderr=False) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def replay(
    projection: Annotated[str, typer.Argument(help=f"one of: {', '.join(sorted(catalog.PROJECTIONS))}")],
    since: Annotated[
        datetime | None,
        typer.Option(parser=parse_time, help="Only events logged at/after this RFC 3339 time: a PARTIAL rebuild."),
    ] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Compare the rebuild with the live tables.")] = False,
    swap: Annotated[
        bool, typer.Option("--swap", help="Make the rebuild live (with --verify: only if it matches).")
    ] = False,
    wait: Annotated[float, typer.Option(help="--verify: seconds to wait for a lagging live consumer.")] = 60,
) -> None:
    """Rebuild PROJECTION from offset zero into `<schema>__rebuild`, folded by the live consumer's own code."""
    try:
        chosen = catalog.get(projection)
    except KeyError:
        known = ", ".join(sorted(catalog.PROJECTIONS))
        raise typer.BadParameter(f"no projection {projection!r}; known: {known}") from None
    projection = chosen.name  # a former name (`usage-ledger`) reads as the projection's own from here on
    if since is not None and (swap or verify):
        err.print(
            f"[red]error:[/red] --since cannot be combined with {'--swap' if swap else '--verify'}. A rebuild from "
            f"{since.isoformat()} lacks every event logged before it: compared with live it differs everywhere, "
            "and swapped in it would silently drop that history from billing while its positions claim it was "
            "read. Replay without --since for a rebuild you can verify or swap."
        )
        raise typer.Exit(2)
    refusal = chosen.not_swappable
    if swap and refusal:  # refuse before spending a rebuild on it
        err.print(f"[red]error:[/red] {projection} cannot be swapped: {refusal}")
        raise typer.Exit(2)
    settings = get_settings()
    logging.getLogger("yoyo").setLevel(logging.WARNING)  # one line per migration step is noise here
    try:
        code = asyncio.run(_replay(settings, projection, since=since, verify=verify, swap=swap, wait=wait))
    except LogError as error:  # a ReplayError, or the log itself unreadable
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


async def _replay(
    settings: Settings, name: str, *, since: datetime | None, verify: bool, swap: bool, wait: float
) -> int:
    async with replaying(settings, name) as run:
        with progress_bar(f"rebuilding {name}") as update:
            result = await run.rebuild(since=since, progress=update)
        report_rebuild(result)
        if verify:
            differences = await run.verify(wait_seconds=wait)
            report_differences(name, differences)
            if differences:
                if swap:
                    err.print("[red]not swapping:[/red] the rebuild differs from the live projection")
                return 1
        if swap:
            old = await run.swap()
            out.print(f"swapped: {run.shadow} is now the live {run.live} (the previous one, renamed {old}, dropped)")
    return 0


def report_rebuild(result: RebuildResult) -> None:
    out.print(
        f"rebuilt {result.projection} into {result.schema}: {result.records} records read, {result.applied} "
        f"applied, {result.dead} dead-lettered, in {result.seconds:.1f}s"
    )
    if result.partial:
        assert result.since is not None
        err.print(
            f"[yellow]PARTIAL rebuild:[/yellow] only events logged at or after {result.since.isoformat()}. "
            f"{result.schema} is NOT a copy of {result.projection}; it cannot be verified or swapped in."
        )


def report_differences(name: str, differences: list[Difference]) -> None:
    if not differences:
        out.print(f"verified: the rebuild of {name} matches the live tables row for row")
        return
    for d in differences:
        out.print(f"[red]{d.table} differs[/red]" + (f": {d.note}" if d.note else ""))
        if d.note:
            continue
        out.print(
            f"  rows: live {d.live_rows}, rebuild {d.rebuild_rows}; only in live {d.only_live}, "
            f"only in rebuild {d.only_rebuild}"
        )
        sides = (("live", d.live_sample, d.only_live), ("rebuild", d.rebuild_sample, d.only_rebuild))
        for label, sample, count in sides:
            for row in sample:
                out.print(f"  only in {label}: " + ", ".join(f"{k}={v}" for k, v in row.items()), soft_wrap=True)
            if count > len(sample):
                out.print(f"  ... and {count - len(sample)} more only in {label}")
    out.print(f"[red]{len(differences)} table(s) differ[/red] between the live {name} and its rebuild")
