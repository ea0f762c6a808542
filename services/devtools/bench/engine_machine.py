"""Where the whole machine's CPU goes over a step of `jobmeter bench engine`: the local stack's own servers (Kafka,
Postgres with every backend, stripe-mock) beside the engine's processes, and the machine's busy and idle share from
/proc/stat, so that what no measured process used shows as "other".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

STACK_PREFIX = "stack/"


@dataclass(frozen=True)
class CpuTimes:
    """The machine's `cpu` line of /proc/stat, in clock ticks since boot, summed over every CPU."""

    cpus: int
    busy: int  # user, nice, system, irq, softirq
    idle: int  # idle and iowait: a CPU waiting on a disk could have run something else
    steal: int  # the hypervisor gave the CPU to another guest: no process here had it


def parse_stat(text: str) -> CpuTimes:
    cpus = 0
    fields: list[int] = []
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name == "cpu":
            fields = [int(v) for v in rest.split()]
        elif name.startswith("cpu") and name[3:].isdigit():
            cpus += 1
    if not fields or not cpus:
        raise ValueError("no cpu lines in /proc/stat")
    # Older kernels stop early; guest and guest_nice (fields 9, 10) are already inside user and nice.
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return CpuTimes(cpus, user + nice + system + irq + softirq, idle + iowait, steal)


def read_stat() -> CpuTimes:
    return parse_stat(Path("/proc/stat").read_text())


@dataclass(frozen=True)
class MachineFigures:
    """Percentages of one core, as the processes' figures are: the machine's capacity is 100 x cpus."""

    cpus: int
    busy_percent: float
    idle_percent: float
    steal_percent: float
    engine_percent: float  # the engine's processes and the bench's own
    stack_percent: float  # Kafka, Postgres and stripe-mock
    other_percent: float  # busy, by nothing measured: other programs on the machine, the kernel's own threads
    # Of Postgres's figure, its backends serving this run's databases: on a shared stack the rest is the server's
    # own work (WAL writer, checkpointer, autovacuum, backends that exited) and other clients' databases.
    postgres_this_run_percent: float | None = None

    def cell(self, key: str) -> str:
        value = getattr(self, key)
        return "—" if value is None else f"{value:.0f}"

    def as_json(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "capacity_percent": 100 * self.cpus, "busy_percent": round(self.busy_percent),
                "idle_percent": round(self.idle_percent), "steal_percent": round(self.steal_percent),
                "engine_percent": round(self.engine_percent), "stack_percent": round(self.stack_percent),
                "other_percent": round(self.other_percent),
                "postgres_this_run_percent": None if self.postgres_this_run_percent is None
                else round(self.postgres_this_run_percent)}


# The machine's rows under the per-process ones in `jobmeter bench engine`'s table: attribute, label.
MACHINE_ROWS = (("engine_percent", "= engine and bench"), ("stack_percent", "= stack (Kafka, Postgres, stripe-mock)"),
                ("other_percent", "= other (nothing measured)"),
                ("postgres_this_run_percent", "of stack/postgres: this run's databases"),
                ("busy_percent", "machine busy"), ("idle_percent", "machine idle"),
                ("steal_percent", "machine steal (hypervisor)"))


def machine_figures(before: CpuTimes, after: CpuTimes, processes: dict[str, float],
                    postgres_this_run: float | None = None) -> MachineFigures | None:
    """The machine's shares between two readings of /proc/stat, given each measured process's CPU (% of one core)
    over the same interval, a name under STACK_PREFIX for the stack's. Scaled by the ticks /proc/stat counted
    rather than a wall clock, so busy, idle and steal add up to the capacity. None when no tick passed."""
    busy, idle, steal = after.busy - before.busy, after.idle - before.idle, after.steal - before.steal
    total = busy + idle + steal
    if total <= 0:
        return None
    capacity = 100.0 * after.cpus
    stack = sum(cpu for name, cpu in processes.items() if name.startswith(STACK_PREFIX))
    engine = sum(processes.values()) - stack
    share = capacity / total
    # Not clamped at 0: a negative "other" says the per-process and machine readings disagree, worth seeing.
    return MachineFigures(after.cpus, busy * share, idle * share, steal * share, engine, stack,
                          busy * share - engine - stack, postgres_this_run)


def database_names(urls: Iterable[str]) -> frozenset[str]:
    return frozenset(urlsplit(url).path.lstrip("/") for url in urls)


def backend_database(cmdline: bytes) -> str | None:
    """The database a Postgres client backend serves, from the title it sets on itself ("postgres: USER DATABASE
    HOST(PORT) STATE"); None for the server's own processes (checkpointer, walwriter, autovacuum worker DB, …)."""
    parts = cmdline.replace(b"\0", b" ").decode(errors="replace").split()
    if len(parts) < 4 or parts[0] != "postgres:" or not (parts[3].endswith(")") or parts[3] == "[local]"):
        return None
    return parts[2]


def stack_pids() -> dict[str, int]:
    """The running local stack's servers by `stack/NAME` (every Kafka node the stack was started with), leaving
    out any the environment points elsewhere: those run on another machine, or at least not as ours."""
    from services.devtools.stack import manager  # lazily, as services.devtools.stack does: it pulls in rich

    found: dict[str, int] = {}
    for name, server in manager.services().items():
        pid = server.pid()
        if manager.external(server) is None and pid is not None and server.alive():
            found[f"{STACK_PREFIX}{name}"] = pid
    return found
