"""Concurrent publishes share one batch a partition while the partition's slot in the producer is taken: a round
trip to Kafka carries every call that waited for it, each record still once, in order per key, and each call
answered by the batches that hold its own records."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass

import pytest
from aiokafka.errors import KafkaTimeoutError

from tests.unit.test_publisher_partitions import Batch, Producer, publisher_on

Record = tuple[str, bytes | None, bytes]


@dataclass
class SmallBatch(Batch):
    """Full after `room` records, as a BatchBuilder is after its bytes."""

    room: int = 1_000_000

    def append(self, *, timestamp: float | None, key: bytes | None, value: bytes, headers: object) -> object | None:
        if len(self.records) >= self.room:
            return None
        return super().append(timestamp=timestamp, key=key, value=value, headers=headers)


class Slotted(Producer):
    """One batch a partition waiting in the producer at a time, each delivered after `round_trip` seconds, as
    aiokafka's accumulator and sender do; batches of `room` records. With `jitter`, each round trip takes a random
    part of that, and the batches waiting for a slot take it in no particular order."""

    def __init__(self, partitions: int, *, round_trip: float = 0.005, room: int = 1_000_000,
                 jitter: bool = False, failing: set[int] | None = None) -> None:
        super().__init__(partitions)
        self.round_trip, self.room, self.jitter = round_trip, room, jitter
        self.failing = failing or set()  # partitions whose batches Kafka refuses
        self.batches: list[tuple[int, int]] = []  # (partition, records) in the order handed over
        self._busy: dict[int, asyncio.Future[None]] = {}

    def create_batch(self) -> SmallBatch:
        return SmallBatch(room=self.room)

    async def stop(self) -> None:  # as aiokafka's: what it was handed is delivered first
        while self._busy:
            await asyncio.wait(list(self._busy.values()))

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[None]:
        while (busy := self._busy.get(partition)) is not None:
            if self.jitter:  # waiters take a freed slot in any order, as aiokafka's, all woken at once, may
                await asyncio.sleep(random.random() * self.round_trip)
            else:
                await asyncio.shield(busy)
        loop = asyncio.get_running_loop()
        delivered: asyncio.Future[None] = loop.create_future()
        self._busy[partition] = delivered
        self.batches.append((partition, len(batch.records)))
        records = list(batch.records)
        delay = self.round_trip * (random.random() if self.jitter else 1)

        def deliver() -> None:
            del self._busy[partition]
            if partition in self.failing:
                delivered.set_exception(KafkaTimeoutError())
                return
            self.sent += [(topic, partition, key, value) for key, value in records]
            delivered.set_result(None)

        loop.call_later(delay, deliver)
        return delivered


def calls(n: int, keys: int, per_call: int) -> list[list[Record]]:
    return [[("t", f"k{(c + i) % keys}".encode(), f"{c}:{i}".encode()) for i in range(per_call)] for c in range(n)]


async def test_concurrent_calls_share_a_batch_a_partition_and_each_record_lands_once_in_order() -> None:
    producer = Slotted(partitions=6)
    publisher = await publisher_on(producer)
    work = calls(40, 12, 30)
    await asyncio.gather(*(publisher.send_raw_many(records) for records in work))
    assert sorted(value for *_, value in producer.sent) == sorted(value for records in work for *_, value in records)
    # The first call's batches take the free slots; all the others wait in the next batch of each partition,
    # where one batch a call would make 40 a partition.
    assert len(producer.batches) <= 2 * 6
    for key in {key for records in work for _, key, _ in records}:
        landed = [value for _, _, k, value in producer.sent if k == key]
        for records in work:  # each call's records of a key in the call's order
            own = [value for _, k, value in records if k == key]
            assert [value for value in landed if value in own] == own


async def test_batches_that_fill_up_follow_each_other_in_order_whatever_each_round_trip_takes() -> None:
    random.seed(3)
    producer = Slotted(partitions=3, room=7, jitter=True)
    publisher = await publisher_on(producer)
    work = calls(25, 5, 40)
    for wave in range(0, 25, 5):
        await asyncio.gather(*(publisher.send_raw_many(records) for records in work[wave:wave + 5]))
    assert len(producer.sent) == 25 * 40
    assert any(size == 7 for _, size in producer.batches)  # batches did fill up
    per_partition: dict[int, list[bytes]] = defaultdict(list)
    for _, partition, _, value in producer.sent:
        per_partition[partition].append(value)
    for records in work:
        for partition, landed in per_partition.items():
            own = [value for _, k, value in records if value in set(landed)]
            assert [value for value in landed if value in own] == own, partition


async def test_a_refused_batch_fails_every_call_whose_records_it_holds_and_no_other() -> None:
    producer = Slotted(partitions=6, failing={0})
    publisher = await publisher_on(producer)
    key = {partition: next(f"k{i}".encode() for i in range(100)
                           if producer._partition("t", None, f"k{i}".encode(), b"", None, None) == partition)
           for partition in (0, 1)}
    outcomes = await asyncio.gather(publisher.send_raw_many([("t", key[0], b"a"), ("t", key[1], b"b")]),
                                    publisher.send_raw_many([("t", key[1], b"c")]),
                                    publisher.send_raw_many([("t", key[0], b"d")]),
                                    return_exceptions=True)
    assert sorted(producer.batches) == [(0, 2), (1, 2)]  # a with d, b with c
    assert isinstance(outcomes[0], KafkaTimeoutError) and outcomes[1] is None
    assert isinstance(outcomes[2], KafkaTimeoutError)
    assert sorted(value for *_, value in producer.sent) == [b"b", b"c"]


async def test_a_caller_that_stops_waiting_leaves_the_shared_batch_to_the_others() -> None:
    producer = Slotted(partitions=2, round_trip=0.2)
    publisher = await publisher_on(producer)
    first = asyncio.ensure_future(publisher.send_raw_many([("t", b"k0", b"first")]))
    await asyncio.sleep(0.01)  # its batch holds the partition's slot
    leaving = asyncio.ensure_future(publisher.send_raw_many([("t", b"k0", b"x")]))
    await asyncio.sleep(0.01)
    staying = asyncio.ensure_future(publisher.send_raw_many([("t", b"k0", b"y")]))  # the same open batch as x
    await asyncio.sleep(0.01)
    leaving.cancel()  # as ingest's deadline does
    await asyncio.gather(first, staying)
    assert [value for *_, value in producer.sent] == [b"first", b"x", b"y"]  # what was added still went, once
    assert [size for _, size in producer.batches] == [1, 2]
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_stop_hands_every_added_record_to_the_producer_first() -> None:
    producer = Slotted(partitions=3, round_trip=0.05)
    publisher = await publisher_on(producer)
    waiting = [asyncio.ensure_future(publisher.send_raw_many(records)) for records in calls(10, 6, 5)]
    await asyncio.sleep(0)
    entering = [task for lane in publisher._lanes.values() for task in lane.entering]
    assert entering
    await publisher.stop()
    assert all(task.done() for task in entering)
    await asyncio.gather(*waiting)
    assert len(producer.sent) == 50
