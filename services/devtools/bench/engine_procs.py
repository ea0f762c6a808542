"""CPU and memory of the engine's processes for `jobmeter bench engine`, read from /proc (no psutil here)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from services.devtools.bench.engine_figures import ProcessFigures
from services.devtools.bench.engine_memory import MemoryTrend, memory_trend

TICKS = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (a command that supervises workers is measured whole), from each thread's
    `children` list rather than a scan of every process on a shared machine."""
    found, frontier = [pid], [pid]
    while frontier:
        nxt: list[int] = []
        for parent in frontier:
            try:
                for task in Path(f"/proc/{parent}/task").iterdir():
                    nxt += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
        found += nxt
        frontier = nxt
    return found


def cpu_seconds(pid: int, *, tree: bool = True) -> float:
    total = 0
    for p in _tree(pid) if tree else [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def rss_mb(pid: int, *, tree: bool = True) -> float:
    total = 0
    for p in _tree(pid) if tree else [pid]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def children_of(pid: int) -> list[int]:
    try:
        return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    except OSError:
        return []


def service_of(pid: int) -> str:
    """What `jobmeter run NAME` a process is (its pid when it is something else)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return str(pid)
    return args[args.index("run") + 1] if "run" in args[:-1] else str(pid)


class Meter:
    """CPU over a step and peak RSS of each process: a process the bench started, and each worker process it
    started in turn (`run all` supervises one per consumer), named `all/ledger`, …; a process counts its own
    children (none, for our services). The bench's own (the load and the probes) is measured without its children,
    the engine."""

    SELF = "bench (load, probes)"

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids: dict[str, tuple[int, bool]] = {}
        for name, pid in pids.items():
            workers = children_of(pid)
            self.pids[name if not workers else f"{name} (itself)"] = (pid, not workers)
            for child in workers:
                self.pids[f"{name}/{service_of(child)}"] = (child, True)
        self.pids[self.SELF] = (os.getpid(), False)
        self.cpu0 = {name: self._cpu(name) for name in self.pids}
        self.peak = {name: self._rss(name) for name in self.pids}
        self.started = time.monotonic()
        self.series: dict[str, list[tuple[float, float]]] = {name: [(0.0, self.peak[name])] for name in self.pids}

    def _cpu(self, name: str) -> float:
        pid, tree = self.pids[name]
        return cpu_seconds(pid, tree=tree)

    def _rss(self, name: str) -> float:
        pid, tree = self.pids[name]
        return rss_mb(pid, tree=tree)

    def sample(self) -> None:
        at = time.monotonic() - self.started
        for name in self.pids:
            rss = self._rss(name)
            self.peak[name] = max(self.peak[name], rss)
            self.series[name].append((at, rss))

    def memory(self, jobs_per_second: float) -> dict[str, MemoryTrend]:
        """Each process's RSS over the step's steady part (sampled with `sample`)."""
        trends = {name: memory_trend(series, jobs_per_second) for name, series in self.series.items()}
        return {name: trend for name, trend in trends.items() if trend is not None}

    def figures(self) -> dict[str, ProcessFigures]:
        wall = time.monotonic() - self.started
        return {name: ProcessFigures(100 * (self._cpu(name) - self.cpu0[name]) / wall, self.peak[name])
                for name in self.pids}
