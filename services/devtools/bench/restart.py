"""`jobmeter bench restart`: the pause one instance's restart causes in a consumer group, with and without static
membership (JOBMETER_INSTANCE_ID, KIP-345).

Per membership, in a sandbox of the running stack: two `jobmeter run ledger` processes share the ledger's group
while jobs are produced at a steady rate; once both fold, the second gets SIGTERM and is started again. Every
`SAMPLE_EVERY` seconds the bench reads the ledger's positions (committed with its rows) and the topic's end
offsets; a partition's gap is how long its position stood still while records were waiting past it. Reported: the
longest gap among the partitions the other instance held before the restart, and among the restarted one's, from
the SIGTERM to the end; the same figure over the seconds before the SIGTERM says what an ordinary pause is.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from events.topics import Topics
from jobmeter.settings import Settings, state_dir
from projections import positions
from projections.db import create_pool, transaction
from projections.log import LogReader
from projections.positions import Partition
from services.devtools.bench.workload import job_messages, raw_producer, send_raw
from services.devtools.chaos.processes import ServiceProcess
from services.devtools.sandbox import sandbox, service_env
from services.platform.consumers import DYNAMIC_SESSION_TIMEOUT_MS, STATIC_SESSION_TIMEOUT_MS, group_id

Membership = Literal["static", "dynamic"]
CONSUMER = "ledger"
SAMPLE_EVERY = 0.05  # seconds: the gaps' resolution
TICK = 0.02  # seconds between two sends of the load


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds
    positions: dict[Partition, int]  # the ledger's next offset per partition (committed with its rows)
    ends: dict[Partition, int]  # the topic's end offset per partition


def longest_gaps(samples: Sequence[Sample], partitions: Iterable[Partition], since: float = float("-inf"),
                 until: float = float("inf")) -> dict[Partition, float]:
    """Per partition, the longest time (seen at a sample in [since, until]) its position stood still while records
    were waiting past it. A stall is counted from the last sample at which the partition moved or had nothing
    waiting, so a gap is over-stated by one sampling interval at most."""
    found: dict[Partition, float] = {}
    for p in partitions:
        moved_at: float | None = None
        last: int | None = None
        longest = 0.0
        for s in samples:
            position, end = s.positions.get(p, 0), s.ends.get(p, 0)
            if last is None or position > last or position >= end:
                moved_at = s.at
            elif moved_at is not None and since <= s.at <= until:
                longest = max(longest, s.at - moved_at)
            last = position
        found[p] = longest
    return found


@dataclass(frozen=True)
class RestartFigures:
    membership: Membership
    session_timeout_s: float
    other_gap_s: float  # the longest gap among the partitions the other instance held
    restarted_gap_s: float  # the longest gap among the restarted instance's partitions
    before_gap_s: float  # the longest gap of any partition over the seconds before the SIGTERM: an ordinary pause
    stop_s: float  # SIGTERM until the process had exited
    partitions: dict[str, list[int]] = field(default_factory=dict)  # "other"/"restarted" → partitions held before

    def as_json(self) -> dict[str, Any]:
        return {"membership": self.membership, "session_timeout_s": self.session_timeout_s,
                "other_longest_gap_s": round(self.other_gap_s, 2),
                "restarted_longest_gap_s": round(self.restarted_gap_s, 2),
                "before_restart_longest_gap_s": round(self.before_gap_s, 2), "stop_s": round(self.stop_s, 2),
                "partitions": self.partitions}


def moved_since(samples: Sequence[Sample], partitions: Iterable[Partition], moment: float) -> bool:
    """Whether every partition's position moved at a sample after `moment`."""
    at: dict[Partition, int] = {}
    for s in samples:
        if s.at <= moment:
            at = s.positions
    later = [s for s in samples if s.at > moment]
    return all(any(s.positions.get(p, 0) > at.get(p, 0) for s in later) for p in partitions)


async def group_members(settings: Settings, consumer: str = CONSUMER) -> tuple[str, dict[str, set[Partition]]]:
    """A consumer's group (the ledger's unless named): its state and each member's partitions, as the broker sees
    them (aiokafka's DescribeGroups is v3 at most: it does not name the instance ids)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups([group_id(settings.jobmeter_topic_prefix, consumer)])
    finally:
        await admin.close()
    _, _, state, _, _, members, *_ = described.groups[0]
    held: dict[str, set[Partition]] = {}
    for member in members:
        assigned = ConsumerProtocolMemberAssignment.decode(member[-1]) if member[-1] else None
        held[member[0]] = {(tp.topic, tp.partition) for tp in assigned.partitions()} if assigned else set()
    return state, held


async def _until(probe: Callable[[], Any], accept: Callable[[Any], bool], what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {seconds:.0f} s (last seen {value!r})")
        await asyncio.sleep(0.2)


async def _value(value: Any) -> Any:
    return value


class _Load:
    """Jobs produced at a steady rate, spread over the partitions by account, until stopped."""

    def __init__(self, settings: Settings, rate: int) -> None:
        self.settings, self.rate = settings, rate
        self.messages: Iterator[tuple[bytes, bytes]] = job_messages(10**9, settings.jobmeter_apis)

    async def run(self, topic: str) -> None:
        producer = raw_producer(self.settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            started, sent = time.monotonic(), 0
            while True:
                due = int((time.monotonic() - started) * self.rate)
                if due > sent:
                    sent += await send_raw(producer, topic, (next(self.messages) for _ in range(due - sent)), 1000)
                await asyncio.sleep(TICK)
        finally:
            await producer.stop()


async def _sample(settings: Settings, topic: str, parts: list[Partition], into: list[Sample]) -> None:
    pool = await create_pool(settings.database_url_for(CONSUMER), max_size=1)
    try:
        async with LogReader(settings.kafka_bootstrap_servers) as log:
            while True:
                at = time.monotonic()
                ends = await log.high_watermarks(parts)
                async with transaction(pool, CONSUMER) as conn:
                    stored = await positions.read_all(conn)
                into.append(Sample(at, {p: o for p, o in stored.items() if p[0] == topic}, ends))
                await asyncio.sleep(max(0.0, SAMPLE_EVERY - (time.monotonic() - at)))
    finally:
        await pool.close()


async def restart_once(base: Settings, membership: Membership, *, rate: int, warm: float, after: float,
                       log: Callable[[str], None]) -> RestartFigures:
    async with sandbox(base) as settings:
        topic = Topics(settings.jobmeter_topic_prefix).name("jobs")
        logs = state_dir() / "logs" / f"bench-restart-{uuid.uuid4().hex[:6]}"

        def process(name: str) -> ServiceProcess:
            env = service_env(settings)
            if membership == "static":
                env["JOBMETER_INSTANCE_ID"] = f"bench-{name}"
            return ServiceProcess(name, [CONSUMER], env, logs)

        other, restarted = process("a"), process("b")
        tasks: list[asyncio.Task[None]] = []
        try:
            other.start()  # alone first: the member that holds everything is the other instance
            _, held = await _until(lambda: group_members(settings), lambda m: m[0] == "Stable" and len(m[1]) == 1
                                       and all(m[1].values()), f"{membership}: the first instance joining")
            (other_member,) = held
            async with LogReader(settings.kafka_bootstrap_servers) as reader:
                parts = await reader.partitions([topic])
            samples: list[Sample] = []
            tasks = [asyncio.create_task(_Load(settings, rate).run(topic)),
                     asyncio.create_task(_sample(settings, topic, parts, samples))]
            restarted.start()
            _, held = await _until(lambda: group_members(settings), lambda m: m[0] == "Stable" and len(m[1]) == 2
                                   and all(m[1].values()), f"{membership}: the second instance joining")
            mine = sorted(held[other_member])
            theirs = sorted(p for member, ps in held.items() if member != other_member for p in ps)
            log(f"{membership}: both instances fold ({len(mine)} + {len(theirs)} partitions); warming {warm:g} s")
            await asyncio.sleep(warm)
            warmed_from = time.monotonic() - warm
            sigterm = time.monotonic()
            await asyncio.to_thread(restarted.stop)  # SIGTERM; the loop keeps sampling meanwhile
            stopped = time.monotonic()
            restarted.start()
            log(f"{membership}: restarted the second instance (stopped in {stopped - sigterm:.1f} s)")
            # Back: both in the group (a static member counts while it is away) and, after that, every partition
            # moved again; then `after` seconds more for a rebalance that follows the join.
            await _until(lambda: group_members(settings), lambda m: m[0] == "Stable" and len(m[1]) == 2
                         and all(m[1].values()), f"{membership}: the restarted instance joining")
            joined = time.monotonic()
            await _until(lambda: _value(moved_since(samples, parts, joined)), bool,
                         f"{membership}: every partition moving again")
            log(f"{membership}: every partition moves again {time.monotonic() - sigterm:.1f} s after the SIGTERM; "
                f"watching {after:g} s more")
            await asyncio.sleep(after)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not restarted.alive:
                raise RuntimeError(f"{membership}: the restarted instance died; logs in {logs}")
            during = longest_gaps(samples, parts, since=sigterm)
            before = longest_gaps(samples, parts, since=warmed_from, until=sigterm)
            timeout = STATIC_SESSION_TIMEOUT_MS if membership == "static" else DYNAMIC_SESSION_TIMEOUT_MS
            return RestartFigures(
                membership, timeout / 1000, max(during[p] for p in mine), max(during[p] for p in theirs),
                max(before.values()), stopped - sigterm,
                {"other": [p for _, p in mine], "restarted": [p for _, p in theirs]},
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(restarted.stop)
            await asyncio.to_thread(other.stop)


async def bench_restart(base: Settings, memberships: Sequence[Membership], *, rate: int = 500, warm: float = 4.0,
                        after: float = 3.0, log: Callable[[str], None] = print) -> list[RestartFigures]:
    return [await restart_once(base, m, rate=rate, warm=warm, after=after, log=log) for m in memberships]
