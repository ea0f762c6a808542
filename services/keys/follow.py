"""Following topics from where a snapshot left off: a plain consumer in no group (every process reads every
record), each partition assigned by hand and sought to its start before the first fetch, so nothing before it is
read again; caught up once every partition reached the end offset it had when following began.

`Progress` is the bookkeeping, pure; `Follower` is the consumer around it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from projections.positions import Partition
from services.platform.poll import PollPolicy, poll

log = structlog.get_logger(__name__)

# How often the consumer's metadata (refreshed by aiokafka itself) is looked at for partitions added since start.
NEW_PARTITIONS_EVERY = 30.0


@dataclass
class Progress:
    """Per partition, the next offset to read (past what was handed over) and, until caught up, the end offset
    it had when following began."""

    next: dict[Partition, int] = field(default_factory=dict)
    targets: dict[Partition, int] = field(default_factory=dict)

    @classmethod
    def starting(cls, partitions: Iterable[Partition], recorded: Mapping[Partition, int]) -> Progress:
        """Each partition from its recorded position; one with none (nothing folded yet) from zero."""
        return cls({p: recorded.get(p, 0) for p in sorted(partitions)})

    def aim(self, ends: Mapping[Partition, int]) -> None:
        """The end offsets as of now: caught up once each partition reached its own (already, when at it)."""
        self.targets = {p: end for p, end in ends.items() if end > self.next.get(p, 0)}

    def took(self, partition: Partition, offsets: Iterable[int]) -> None:
        """Records at these offsets were handed over."""
        self.next[partition] = max([self.next.get(partition, 0), *(o + 1 for o in offsets)])
        self.reached(partition, self.next[partition])

    def reached(self, partition: Partition, position: int) -> None:
        """The consumer's position on this partition (it also steps over offsets that hold no record)."""
        if self.targets.get(partition, 0) <= position:
            self.targets.pop(partition, None)

    @property
    def caught_up(self) -> bool:
        return not self.targets

    def add(self, found: Iterable[Partition]) -> list[Partition]:
        """Partitions found beyond those followed (added to a topic since): followed from zero. Returns them."""
        new = sorted(set(found) - set(self.next))
        for p in new:
            self.next[p] = 0
        return new


@dataclass
class Follower:
    """Hands every record of `topics` from `start` on to `on_records`, in log order per partition; calls
    `on_caught_up` once, when every partition reached the end it had at start. A failing pass is retried (`poll`)
    from where the last good one left off."""

    bootstrap_servers: str
    topics: Sequence[str]
    start: Mapping[Partition, int]
    on_records: Callable[[list[ConsumerRecord[Any, Any]]], None]
    on_caught_up: Callable[[], None]
    name: str = "follower"
    max_records: int = 1000
    received: int = 0  # records handed over since start
    progress: Progress = field(default_factory=Progress)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None
    _looked: float = 0.0
    _announced: bool = False

    async def __aenter__(self) -> Follower:
        partitions = await self._partitions()
        self._consumer = consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest",  # a position below the log's start (retention): from where it starts
            fetch_max_wait_ms=100,  # as the folding consumers: a drained partition must not hold the next fetch
        )
        await consumer.start()
        # aiokafka (0.14) starts a background task when there is no group; one turn of the loop lets it start, so
        # a stop right after stays clean (as projections/log.py).
        await asyncio.sleep(0)
        try:
            self.progress = Progress.starting(partitions, self.start)
            self._assign()
            ends = await consumer.end_offsets([TopicPartition(*p) for p in partitions])
            self.progress.aim({(tp.topic, tp.partition): end for tp, end in ends.items()})
        except BaseException:
            await consumer.stop()
            raise
        self._looked = time.monotonic()
        self._announce()
        self._task = asyncio.create_task(poll(self.name, self._pass, PollPolicy(idle=0.0)))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    async def _partitions(self) -> list[Partition]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            described = await admin.describe_topics(list(self.topics))
        finally:
            await admin.close()
        found: list[Partition] = []
        for topic in described:
            if topic["error_code"] or not topic["partitions"]:
                raise RuntimeError(f"topic {topic['topic']} does not exist: cannot follow it")
            found += [(topic["topic"], p["partition"]) for p in topic["partitions"]]
        return sorted(found)

    def _assign(self) -> None:
        """Assign every followed partition and seek each to its next offset, with no await in between: the
        consumer fetches nothing before it is told where from."""
        assert self._consumer is not None
        tps = {p: TopicPartition(*p) for p in self.progress.next}
        self._consumer.assign(list(tps.values()))
        for p, tp in tps.items():
            self._consumer.seek(tp, self.progress.next[p])

    def _announce(self) -> None:
        if self.progress.caught_up and not self._announced:
            self._announced = True
            log.info("caught up with the log", follower=self.name, received=self.received)
            self.on_caught_up()

    async def _pass(self) -> bool:
        assert self._consumer is not None
        if time.monotonic() - self._looked > NEW_PARTITIONS_EVERY:
            self._looked = time.monotonic()
            known = [(t, p) for t in self.topics for p in (self._consumer.partitions_for_topic(t) or ())]
            if added := self.progress.add(known):
                log.info("following partitions added since start", follower=self.name, partitions=added)
                self._assign()
        fetched = await self._consumer.getmany(timeout_ms=500, max_records=self.max_records)
        records = [r for batch in fetched.values() for r in batch]
        if records:
            self.received += len(records)
            try:
                self.on_records(records)
            except BaseException:
                self._assign()  # back to what was handed over before: the retried pass reads these again
                raise
        for tp, batch in fetched.items():
            self.progress.took((tp.topic, tp.partition), (r.offset for r in batch))
        for topic, number in list(self.progress.targets):
            self.progress.reached((topic, number), await self._consumer.position(TopicPartition(topic, number)))
        self._announce()
        return bool(records)
