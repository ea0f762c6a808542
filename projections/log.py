"""Reading fixed ranges of the event log, for replay and export: a plain consumer that joins no group, commits
nothing and leaves nothing behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from projections.positions import Partition
from projections.records import Record

Offsets = dict[Partition, int]
STALL_SECONDS = 120.0


class LogError(RuntimeError):
    """The log cannot be read as asked (a missing topic, no progress); the message says what to check."""


class LogReader:
    """Reads fixed offset ranges of topics with a plain consumer: no group, no commits, nothing left behind."""

    def __init__(self, bootstrap_servers: str, *, max_records: int = 2000) -> None:
        self.max_records = max_records
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # offset zero deleted by retention: start where the log starts
        )
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)  # partitions by topic

    async def __aenter__(self) -> LogReader:
        await self._admin.start()
        try:
            await self._consumer.start()
        except BaseException:
            await self._admin.close()
            raise
        # aiokafka (0.14) starts a background task when there is no group; stopped before that task first runs,
        # stop() raises CancelledError. One turn of the loop lets it start, so a quick failure stays clean.
        await asyncio.sleep(0)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._consumer.stop()
        finally:
            await self._admin.close()

    async def partitions(self, topics: Sequence[str]) -> list[Partition]:
        """Asked afresh each time, so partitions added since the last call are read too."""
        found: list[Partition] = []
        for described in await self._admin.describe_topics(list(topics)):
            if described["error_code"] or not described["partitions"]:
                raise LogError(f"topic {described['topic']} does not exist (nothing published, wrong prefix?)")
            found += [(described["topic"], p["partition"]) for p in described["partitions"]]
        return sorted(found)

    async def high_watermarks(self, partitions: Sequence[Partition]) -> Offsets:
        ends = await self._consumer.end_offsets([TopicPartition(*p) for p in partitions])
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def offsets_at(self, partitions: Sequence[Partition], when: datetime) -> Offsets:
        """Per partition, the first offset logged at or after `when`; the high watermark where there is none."""
        ms = int(when.timestamp() * 1000)
        found = await self._consumer.offsets_for_times({TopicPartition(*p): ms for p in partitions})
        ends = await self.high_watermarks(partitions)
        return {
            (tp.topic, tp.partition): ends[(tp.topic, tp.partition)] if hit is None else hit.offset
            for tp, hit in found.items()
        }

    async def read_to_end(self, topics: Sequence[str]) -> AsyncIterator[list[Record]]:
        """Everything in these topics up to their ends as of now: an empty poll is not the end of a topic (a
        broker busy or just restarted answers late), the high watermark is."""
        ends = await self.high_watermarks(await self.partitions(topics))
        async for batch in self.read({}, ends):
            yield batch

    async def read(
        self, start: Mapping[Partition, int], stop: Mapping[Partition, int]
    ) -> AsyncIterator[list[Record]]:
        """Batches of the records in [start, stop) of each partition in `stop` (start defaults to zero)."""
        todo = {p: end for p, end in stop.items() if start.get(p, 0) < end}
        if not todo:
            return
        tps = {p: TopicPartition(*p) for p in todo}
        self._consumer.assign(list(tps.values()))
        for p in todo:
            self._consumer.seek(tps[p], start.get(p, 0))
        last_progress = time.monotonic()
        while todo:
            fetched = await self._consumer.getmany(
                *(tps[p] for p in todo), timeout_ms=500, max_records=self.max_records
            )
            batch: list[Record] = [
                r
                for tp, records in fetched.items()
                for r in records
                if r.offset < todo.get((tp.topic, tp.partition), -1)
            ]
            for p in list(todo):
                # The position, not the last offset seen, says when a partition is done: it also steps over
                # offsets that hold no record for us (transaction markers, compaction).
                if await self._consumer.position(tps[p]) >= todo[p]:
                    del todo[p]
            if batch:
                last_progress = time.monotonic()
                yield batch
            elif time.monotonic() - last_progress > STALL_SECONDS:
                raise LogError(f"no progress reading the log for {STALL_SECONDS:.0f}s; still waiting on {todo}")


