"""A consumer scaled out and back in under load, for `jobmeter chaos --brokers 3` (and the cluster test): one
instance of `SCALED` runs from the start; a second joins a third of the way into the traffic and gets SIGTERM at
two thirds; the run goes on with one. Each change is recorded with the group as the broker sees it once settled.

Both instances are dynamic members (no JOBMETER_INSTANCE_ID), as a consumer that scales in and out runs: a static
member sends no LeaveGroup when it stops, so a scale-in would leave its partitions unread for the whole session
timeout (45 s) before the group noticed; and a static member SIGKILLed by another fault just as the second instance
joins holds the whole group's rebalance until it is back or that timeout ends (a 1-minute run with a static first
instance, SIGKILLed around the join, found the group still rebalancing 60 s after it). A dynamic one leaves at its
SIGTERM, or is given up after 6 s when killed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from jobmeter.settings import Settings
from projections.positions import Partition
from services.devtools.bench.restart import group_members
from services.devtools.chaos.invariants import Invariant
from services.devtools.chaos.processes import ServiceProcess
from services.engine.runtime import PROJECTION_SERVICES

SCALED = "ledger"
SETTLE_BOUND = 90.0  # seconds for the group to be stable with the new count (a broker may be down meanwhile)
UP_AT, DOWN_AT = 1 / 3, 2 / 3  # of the traffic's duration


@dataclass(frozen=True)
class GroupChange:
    """One change of a consumer's instance count, and the group once it settled (or as last seen)."""

    consumer: str
    before: int
    after: int
    at: datetime
    into_run_s: float  # seconds after the traffic started
    settled_s: float | None  # from the change to a stable group of `after` members each holding partitions
    state: str
    members: dict[str, set[Partition]]

    @property
    def followed(self) -> bool:
        return self.settled_s is not None and len(self.members) == self.after

    def as_json(self) -> dict[str, Any]:
        return {"consumer": self.consumer, "instances_before": self.before, "instances_after": self.after,
                "at": self.at.isoformat(timespec="seconds"), "seconds_into_run": round(self.into_run_s, 1),
                "settled_seconds": None if self.settled_s is None else round(self.settled_s, 1),
                "group_state": self.state,
                "members": [{"member_id": member, "partitions": sorted(f"{t}:{p}" for t, p in held)}
                            for member, held in sorted(self.members.items())]}


async def settled_group(settings: Settings, consumer: str, count: int,
                        bound: float = SETTLE_BOUND) -> tuple[float | None, str, dict[str, set[Partition]]]:
    """Seconds until the group is stable with `count` members, each holding partitions (None past the bound), with
    its state and members as last seen."""
    started = time.monotonic()
    state, members = "Unknown", dict[str, set[Partition]]()
    while True:
        try:
            state, members = await group_members(settings, consumer)
        except (KafkaError, OSError):  # the group's coordinator killed by another fault: it moves, look again
            pass
        if state == "Stable" and len(members) == count and all(members.values()):
            return time.monotonic() - started, state, members
        if time.monotonic() - started > bound:
            return None, state, members
        await asyncio.sleep(0.2)


async def record_change(settings: Settings, consumer: str, before: int, after: int, since: float,
                        bound: float = SETTLE_BOUND) -> GroupChange:
    """Call right after the change (`since`: time.monotonic() when the traffic started)."""
    at, into = datetime.now(UTC), time.monotonic() - since
    settled, state, members = await settled_group(settings, consumer, after, bound)
    return GroupChange(consumer, before, after, at, into, settled, state, members)


def group_followed_scaling(changes: list[GroupChange], steps: list[tuple[int, int]]) -> Invariant:
    """Every step was taken, in order, and after each the group settled with as many members as instances."""
    return Invariant(
        "group_followed_scaling",
        [(c.before, c.after) for c in changes] == steps and all(c.followed for c in changes),
        {"consumer": changes[0].consumer if changes else SCALED, "steps": [f"{b}→{a}" for b, a in steps],
         "members_after": [len(c.members) for c in changes], "settled_seconds": [c.as_json()["settled_seconds"]
                                                                                for c in changes]},
    )


def consumer_processes(env: dict[str, str], run: str, logs: Path, brokers: int) -> list[ServiceProcess]:
    """Every consumer as the run starts it: one instance each on one broker; on a cluster, as a deployment runs
    them, two of each, static members, but one of `SCALED`, a dynamic member, whose second comes and goes
    (`Scaler`)."""
    if brokers == 1:
        return [ServiceProcess(name, [name], env, logs) for name in PROJECTION_SERVICES]
    dynamic = {k: v for k, v in env.items() if k != "JOBMETER_INSTANCE_ID"}
    return [ServiceProcess(f"{SCALED}-1", [SCALED], dynamic, logs), *(
        ServiceProcess(f"{name}-{n}", [name], {**env, "JOBMETER_INSTANCE_ID": f"chaos-{run}-{n}"}, logs)
        for name in PROJECTION_SERVICES if name != SCALED for n in (1, 2))]


@dataclass
class Scaler:
    """`SCALED` from one instance to two and back to one over the traffic; `processes` is what it runs now."""

    settings: Settings
    env: dict[str, str]
    logs: Path
    changes: list[GroupChange] = field(default_factory=list)
    processes: list[ServiceProcess] = field(default_factory=list)
    steps: list[tuple[int, int]] = field(default_factory=lambda: [(1, 2), (2, 1)])

    async def run(self, seconds: float, log: Callable[[str], None] = print) -> None:
        started = time.monotonic()
        await asyncio.sleep(seconds * UP_AT)
        log(f"scale {SCALED}: 1 → 2 instances")
        added = ServiceProcess(f"{SCALED}-2", [SCALED], {k: v for k, v in self.env.items()
                                                         if k != "JOBMETER_INSTANCE_ID"}, self.logs)
        added.start()
        self.processes.append(added)
        self.changes.append(await record_change(self.settings, SCALED, 1, 2, started))
        await asyncio.sleep(max(0.0, started + seconds * DOWN_AT - time.monotonic()))
        log(f"scale {SCALED}: 2 → 1 instance (SIGTERM {added.name})")
        self.processes.remove(added)
        await asyncio.to_thread(added.stop)
        self.changes.append(await record_change(self.settings, SCALED, 2, 1, started))

    def invariant(self) -> Invariant:
        return group_followed_scaling(self.changes, self.steps)

    def figures(self) -> list[dict[str, Any]]:
        return [c.as_json() for c in self.changes]
