"""The publisher keeps each key's partition from call to call: every record must still go where the producer's own
partitioner puts its key, also after the topic gained partitions, in the call's order per key."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from events.jobs import JobCompleted
from events.publisher import Publisher

AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@dataclass
class Batch:
    records: list[tuple[bytes | None, bytes]] = field(default_factory=list)

    def append(self, *, timestamp: float | None, key: bytes | None, value: bytes, headers: Any) -> object:
        self.records.append((key, value))
        return object()


@dataclass
class Metadata:
    partitions: set[int]

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.partitions)

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.partitions)


class Producer:
    """The part of AIOKafkaProducer the publisher uses, with its default partitioner, recording where each key went."""

    def __init__(self, partitions: int) -> None:
        self._metadata = Metadata(set(range(partitions)))
        self.partitioner_calls = 0
        self.sent: list[tuple[str, int, bytes | None, bytes]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return self._metadata.partitions_for_topic(topic)

    def _partition(self, topic: str, partition: int | None, key: bytes | None, value: bytes, *_: object) -> int:
        self.partitioner_calls += 1
        every = list(self._metadata.partitions_for_topic(topic))
        chosen: int = DefaultPartitioner()(key, every, every)
        return chosen

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.sent += [(topic, partition, key, value) for key, value in batch.records]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def jobs(n: int, accounts: int, label: str) -> list[JobCompleted]:
    return [JobCompleted(account_id=f"acct-{i % accounts}", api="extract", job_id=f"{label}-{i}", channel="direct",
                         mode="sync", completed_at=AT) for i in range(n)]


async def publisher_on(producer: Producer) -> Publisher:
    publisher = Publisher("127.0.0.1:1", producer="test")
    await publisher._producer.stop()  # never started: closed, so nothing warns of it
    publisher._producer = producer
    return publisher


def where(key: bytes | None, partitions: int) -> int:
    every = list(range(partitions))
    chosen: int = DefaultPartitioner()(key, every, every)
    return chosen


async def test_keys_keep_the_partitioners_choice_across_calls_and_follow_a_grown_topic() -> None:
    producer = Producer(partitions=6)
    publisher = await publisher_on(producer)
    await publisher.publish_many(jobs(120, 40, "a"))
    assert producer.partitioner_calls == 40  # once per key
    await publisher.publish_many(jobs(120, 40, "b"))
    assert producer.partitioner_calls == 40  # the next call reuses the choices
    assert all(partition == where(key, 6) for _, partition, key, _ in producer.sent)

    producer._metadata.partitions = set(range(10))  # the topic grew: the choices are made again
    producer.sent.clear()
    await publisher.publish_many(jobs(120, 40, "c"))
    assert producer.partitioner_calls == 80
    assert all(partition == where(key, 10) for _, partition, key, _ in producer.sent)
    assert any(where(key, 10) != where(key, 6) for _, _, key, _ in producer.sent)  # so a stale choice would show


async def test_records_keep_the_calls_order_per_key_and_topic() -> None:
    producer = Producer(partitions=4)
    publisher = await publisher_on(producer)
    records = [("t", b"k1", b"1"), ("u", b"k1", b"2"), ("t", b"k2", b"3"), ("t", b"k1", b"4"), ("u", b"k1", b"5"),
               ("t", None, b"6")]
    await publisher.send_raw_many(records)
    keyless = next(partition for _, partition, key, _ in producer.sent if key is None)  # any partition
    assert sorted(producer.sent, key=lambda r: r[3]) == [
        (topic, keyless if key is None else where(key, 4), key, value) for topic, key, value in records]
    for topic, key in (("t", b"k1"), ("u", b"k1")):
        assert [v for t, _, k, v in producer.sent if (t, k) == (topic, key)] == [
            v for t, k, v in records if (t, k) == (topic, key)]
