"""`jobmeter bench restart`'s command: options, the rich table and `--json` (the measuring is in restart.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.table import Table

from jobmeter.settings import get_settings
from services.devtools.bench.restart import CONSUMER, SAMPLE_EVERY, Membership, RestartFigures, bench_restart

MEMBERSHIPS: tuple[Membership, ...] = ("dynamic", "static")


def parse_memberships(value: str) -> list[Membership]:
    chosen = [m.strip() for m in value.split(",") if m.strip()]
    if not chosen or any(m not in MEMBERSHIPS for m in chosen):
        raise typer.BadParameter(f"comma-separated among {', '.join(MEMBERSHIPS)}; got {value!r}")
    return [cast(Membership, m) for m in chosen]


def table(runs: list[RestartFigures], rate: int) -> Table:
    shown = Table(title=f"restart pause: two `run {CONSUMER}` instances, {rate:,} jobs/s, one SIGTERMed and started "
                        f"again (longest seconds a partition stood still with records waiting, ±{SAMPLE_EVERY:g} s)")
    for column in ("membership", "session timeout s", "other instance's partitions", "restarted one's partitions",
                   "before the restart", "SIGTERM → exited s"):
        shown.add_column(column, justify="left" if column == "membership" else "right")
    for run in runs:
        shown.add_row(run.membership, f"{run.session_timeout_s:g}", f"{run.other_gap_s:.2f}",
                      f"{run.restarted_gap_s:.2f}", f"{run.before_gap_s:.2f}", f"{run.stop_s:.2f}")
    return shown


def command(
    membership: Annotated[str, typer.Option(help="dynamic, static or both, comma-separated")] = "dynamic,static",
    rate: Annotated[int, typer.Option(min=1, help="jobs/s produced while measuring")] = 500,
    warm: Annotated[float, typer.Option(min=0.5, help="seconds both instances fold before the restart")] = 4.0,
    after: Annotated[float, typer.Option(min=0.5, help="seconds watched once every partition moves again")] = 3.0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """The pause one instance's restart (SIGTERM, start) causes in its consumer group, with and without
    JOBMETER_INSTANCE_ID: the longest gap in the other instance's partitions and in the restarted one's."""
    stderr = Console(stderr=True)
    runs = asyncio.run(bench_restart(get_settings(), parse_memberships(membership), rate=rate, warm=warm,
                                     after=after, log=lambda line: stderr.print(line, markup=False, highlight=False)))
    if as_json:
        print(json.dumps({"consumer": CONSUMER, "rate": rate, "sample_every_s": SAMPLE_EVERY,
                          "runs": [r.as_json() for r in runs]}, indent=2))
        return
    Console().print(table(runs, rate))
