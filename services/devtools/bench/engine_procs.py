"""CPU and memory of the engine's processes, and of the stack's servers, for `jobmeter bench engine`, read from
/proc (no psutil here)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from services.devtools.bench.engine_figures import ProcessFigures
from services.devtools.bench.engine_machine import (
    STACK_PREFIX,
    MachineFigures,
    backend_database,
    machine_figures,
    read_stat,
)
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
    """A tree counts its children that exited too (cutime, cstime, once their parent reaped them): Postgres
    starts and ends autovacuum workers and backends within a step, and their CPU would drop out of a sum of the
    living. Each reaped process is in exactly one reaper's figure, so nothing counts twice."""
    total = 0
    for p in _tree(pid) if tree else [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if tree:
            total += int(fields[13]) + int(fields[14])
    return total / TICKS


def _kb_mb(pids: list[int], file: str, field: str) -> float:
    """The `field` line (in kB) of /proc/PID/`file`, summed over `pids` that still exist, in MB."""
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/{file}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def rss_mb(pid: int, *, tree: bool = True) -> float:
    return _kb_mb(_tree(pid) if tree else [pid], "status", "VmRSS:")


def pss_mb(pid: int) -> float:
    """The tree's proportional set size: shared pages split between the processes that map them. Postgres's
    shared buffers are in every backend's RSS, and a sum of RSS would count them once per backend."""
    return _kb_mb(_tree(pid), "smaps_rollup", "Pss:")


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
    the engine. The stack's servers (`stack/kafka`, …) are measured whole, their memory as PSS; and the machine's
    busy and idle CPU over the same interval, to show what nothing measured used; and of Postgres, the backends
    serving `databases` (this run's), when the stack is shared with other clients."""

    SELF = "bench (load, probes)"

    POSTGRES = f"{STACK_PREFIX}postgres"

    def __init__(self, pids: dict[str, int], stack: dict[str, int] | None = None,
                 databases: frozenset[str] = frozenset()) -> None:
        self.pids: dict[str, tuple[int, bool]] = {}
        for name, pid in pids.items():
            workers = children_of(pid)
            self.pids[name if not workers else f"{name} (itself)"] = (pid, not workers)
            for child in workers:
                self.pids[f"{name}/{service_of(child)}"] = (child, True)
        self.pids[self.SELF] = (os.getpid(), False)
        self.pids.update({name: (pid, True) for name, pid in (stack or {}).items()})
        self.databases = databases
        self.postgres_this_run: float | None = None
        self.stat0 = self.stat1 = read_stat()
        self.backends0 = self._backends()
        self.cpu0 = {name: self._cpu(name) for name in self.pids}
        self.peak = {name: self._rss(name) for name in self.pids}
        self.started = time.monotonic()
        self.series: dict[str, list[tuple[float, float]]] = {name: [(0.0, self.peak[name])] for name in self.pids}

    def _cpu(self, name: str) -> float:
        pid, tree = self.pids[name]
        return cpu_seconds(pid, tree=tree)

    def _backends(self) -> dict[int, float]:
        """CPU seconds of each Postgres backend serving one of `databases`."""
        if self.POSTGRES not in self.pids or not self.databases:
            return {}
        out: dict[int, float] = {}
        for child in children_of(self.pids[self.POSTGRES][0]):
            try:
                database = backend_database(Path(f"/proc/{child}/cmdline").read_bytes())
            except OSError:
                continue
            if database in self.databases:
                out[child] = cpu_seconds(child, tree=False)
        return out

    def _rss(self, name: str) -> float:
        pid, tree = self.pids[name]
        return pss_mb(pid) if name.startswith(STACK_PREFIX) else rss_mb(pid, tree=tree)

    def sample(self, *, last: bool = False) -> None:
        """Each process's memory now. The stack's servers only at the step's start and end (`last`): their PSS
        takes ~25 ms of the bench's CPU to read (Kafka's threads, every backend's page tables), and read every half
        second it took a tenth of a core from the engine it measures."""
        at = time.monotonic() - self.started
        for name in self.pids:
            if name.startswith(STACK_PREFIX) and not last:
                continue
            rss = self._rss(name)
            self.peak[name] = max(self.peak[name], rss)
            self.series[name].append((at, rss))

    def memory(self, jobs_per_second: float) -> dict[str, MemoryTrend]:
        """Each process's RSS over the step's steady part (sampled with `sample`)."""
        trends = {name: memory_trend(series, jobs_per_second) for name, series in self.series.items()}
        return {name: trend for name, trend in trends.items() if trend is not None}

    def figures(self) -> dict[str, ProcessFigures]:
        wall = time.monotonic() - self.started
        out = {name: ProcessFigures(100 * (self._cpu(name) - self.cpu0[name]) / wall, self.peak[name],
                                    name.startswith(STACK_PREFIX)) for name in self.pids}
        self.stat1 = read_stat()
        # A backend that started within the step counts from nothing; one that ended is lost (pools keep theirs).
        mine = sum(cpu - self.backends0.get(pid, 0.0) for pid, cpu in self._backends().items())
        self.postgres_this_run = 100 * mine / wall if self.POSTGRES in self.pids and self.databases else None
        return out

    def machine(self, figures: dict[str, ProcessFigures]) -> MachineFigures | None:
        """The machine over the interval `figures` measured (call it after `figures`)."""
        return machine_figures(self.stat0, self.stat1, {name: f.cpu_percent for name, f in figures.items()},
                               self.postgres_this_run)
