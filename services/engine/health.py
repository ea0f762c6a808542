"""What a process knows of its own health, and how a worker of `run all` (which has no HTTP port) tells it to the
supervisor that answers `/healthz` for it: a small JSON file the supervisor named, rewritten every few seconds.

A file, not a pipe or a socket: the worker writes it with one atomic rename and needs nothing from the supervisor,
so a supervisor restarted on its own, or a worker blocked in a long batch, cannot wedge the other side; a report
that stops being rewritten is itself the signal that the worker is stuck.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.engine.runtime import Runtime
    from services.platform.resources import Resources

REPORT_EVERY = 2.0  # seconds between a worker's reports
# A report older than this means the worker's event loop stopped turning (a batch blocking it for that long is
# itself a fault); far above REPORT_EVERY so a loaded machine does not flap.
STALE_AFTER = 30.0


def held_partitions(runtime: Runtime) -> list[dict[str, Any]]:
    """Partitions this process's consumers hold at a record they cannot read yet (see projections/holds.py)."""
    return [{"consumer": name, "topic": topic, "partition": partition, "offset": hold.offset, "reason": hold.reason}
            for name, folder in sorted(runtime.folders.items())
            for (topic, partition), hold in sorted(folder.held.items())]


async def report_health(runtime: Runtime, path: Path, _res: Resources) -> None:
    """A worker's side: rewrite its report until the process stops."""
    scratch = path.with_name(path.name + ".tmp")
    while True:
        scratch.write_text(json.dumps({"pid": os.getpid(), "written_at": time.time(),
                                       "held": held_partitions(runtime)}))
        os.replace(scratch, path)
        await asyncio.sleep(REPORT_EVERY)


@dataclass(frozen=True)
class WorkerHealth:
    """One worker as the supervisor sees it: `problem` is None when it is healthy."""

    name: str
    pid: int | None
    restarts: int
    last_exit_code: int | None
    held: list[dict[str, Any]]
    problem: str | None


def judge(name: str, pid: int | None, restarts: int, last_exit_code: int | None, report: dict[str, Any] | None,
          now: float, started_at: float) -> WorkerHealth:
    """Pure: a worker's health from its process state and its last report."""
    held: list[dict[str, Any]] = list(report.get("held", [])) if report else []
    problem: str | None = None
    if pid is None:
        problem = f"worker {name} is not running (last exit code {last_exit_code}); it is being started again"
    elif report is None or report.get("pid") != pid:
        # A fresh process has not reported yet: not ready, as a starting HTTP app is not.
        problem = f"worker {name} (pid {pid}) is starting"
        held = []
        if now - started_at > STALE_AFTER:
            problem = f"worker {name} (pid {pid}) has not reported for {now - started_at:.0f} s"
    elif now - float(report.get("written_at", 0)) > STALE_AFTER:
        problem = f"worker {name} (pid {pid}) has not reported for {now - float(report['written_at']):.0f} s"
    elif held:
        problem = "; ".join(f"{h['consumer']} holds {h['topic']}[{h['partition']}] at offset {h['offset']}: "
                            f"{h['reason']}" for h in held)
    return WorkerHealth(name, pid, restarts, last_exit_code, held, problem)


def read_report(path: Path) -> dict[str, Any] | None:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None
