"""`run all`'s workers: how the supervisor judges each from its process and its report, the report a worker
writes, and that a worker (or the bench's engine) dies with its parent even when the parent is SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from projections.holds import Hold
from services.engine.health import STALE_AFTER, judge, read_report, report_health

HELD = {"consumer": "ledger", "topic": "jobs", "partition": 3, "offset": 17, "reason": "JobCompleted v9"}


def report(pid: int, age: float, now: float, held: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"pid": pid, "written_at": now - age, "held": held or []}


def test_a_running_worker_with_a_fresh_report_is_healthy() -> None:
    now = 1000.0
    health = judge("ledger", 42, 0, None, report(42, 1, now), now, started_at=now - 60)
    assert health.problem is None and health.held == []


def test_a_worker_between_restarts_is_unhealthy_with_its_exit_code() -> None:
    health = judge("ledger", None, 2, -9, report(42, 1, 1000.0), 1000.0, started_at=900.0)
    assert health.problem is not None and "-9" in health.problem


def test_a_new_process_is_starting_until_it_reports_and_stuck_when_it_never_does() -> None:
    now = 1000.0
    # The file left by the process before the restart does not count for the new one.
    starting = judge("ledger", 43, 1, -9, report(42, 1, now, [HELD]), now, started_at=now - 2)
    assert starting.problem is not None and "starting" in starting.problem and starting.held == []
    never = judge("ledger", 43, 1, -9, None, now, started_at=now - STALE_AFTER - 1)
    assert never.problem is not None and "not reported" in never.problem


def test_a_report_that_stopped_being_rewritten_means_a_stuck_worker() -> None:
    now = 1000.0
    health = judge("ledger", 42, 0, None, report(42, STALE_AFTER + 5, now), now, started_at=0)
    assert health.problem is not None and "not reported" in health.problem


def test_a_held_partition_is_a_problem_named_with_its_record() -> None:
    now = 1000.0
    health = judge("ledger", 42, 0, None, report(42, 1, now, [HELD]), now, started_at=0)
    assert health.held == [HELD]
    assert health.problem is not None and "jobs[3] at offset 17" in health.problem


async def test_a_worker_reports_what_its_consumers_hold(tmp_path: Path) -> None:
    folder = SimpleNamespace(held={("jobs", 3): Hold(17, "JobCompleted v9")})
    runtime: Any = SimpleNamespace(folders={"ledger": folder})
    path = tmp_path / "ledger.json"
    task = asyncio.create_task(report_health(runtime, path, None))  # type: ignore[arg-type]
    try:
        for _ in range(100):
            if read_report(path) is not None:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
    written = read_report(path)
    assert written is not None and written["pid"] == os.getpid() and written["held"] == [HELD]
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


SUPERVISOR = """
import asyncio, sys
from services.engine.supervisor import Worker
worker = Worker("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"])
asyncio.run(worker.keep_running())
"""
# The bench's and the chaos run's `ServiceProcess`, started as they start it (a session of its own, so killing the
# parent's process group does not reach it; only the parent-death signal does), a sleeper in place of `jobmeter run`.
BENCH = """
import os, sys, tempfile, time
from pathlib import Path
from services.devtools.chaos.processes import ServiceProcess

class Sleeper(ServiceProcess):
    def command(self):
        return [sys.executable, "-c", "import time; time.sleep(600)"]

Sleeper("sleeper", [], dict(os.environ), Path(tempfile.mkdtemp())).start()
time.sleep(600)
"""


@pytest.mark.parametrize("parent", [SUPERVISOR, BENCH], ids=["run all's supervisor", "the bench's engine"])
def test_a_child_dies_with_its_parent_even_when_it_is_sigkilled(parent: str) -> None:
    supervisor = subprocess.Popen([sys.executable, "-c", parent], cwd=Path(__file__).resolve().parents[2])
    try:
        child = None
        deadline = time.monotonic() + 60
        while child is None and time.monotonic() < deadline:
            children = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split()
            child = int(children[0]) if children else None
            time.sleep(0.05)
        assert child is not None, "the parent never started its child"
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the child outlived its SIGKILLed parent"
    finally:
        supervisor.kill()
