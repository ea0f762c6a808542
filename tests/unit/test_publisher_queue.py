"""A batch aiokafka refuses to queue (`KafkaTimeoutError` from `send_batch`, before anything of it is sent) is queued
again until the producer's request timeout has really passed: its own wait gives up far sooner under load."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaTimeoutError

from events.publisher import Publisher
from tests.unit.test_publisher_partitions import Batch, Producer, jobs, publisher_on


class Refusing(Producer):
    """Refuses the first `refusals` batches it is handed, as a busy partition's queue does."""

    def __init__(self, refusals: int) -> None:
        super().__init__(partitions=3)
        self.refusals = refusals
        self.tries = 0

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.tries += 1
        if self.refusals > 0:
            self.refusals -= 1
            await asyncio.sleep(0.001)
            raise KafkaTimeoutError()
        return await super().send_batch(batch, topic, partition=partition)


async def published(producer: Refusing, queue_seconds: float | None = None) -> Publisher:
    publisher = await publisher_on(producer)
    if queue_seconds is not None:
        publisher._queue_seconds = queue_seconds
    await publisher.publish_many(jobs(30, 10, "q"))
    return publisher


async def test_a_refused_batch_is_queued_again_and_every_record_sent_once() -> None:
    producer = Refusing(refusals=5)
    await published(producer)
    assert sorted(key or b"" for _, _, key, _ in producer.sent) == sorted(f"acct-{i % 10}".encode() for i in range(30))
    assert producer.tries == len({p for _, p, _, _ in producer.sent}) + 5


async def test_past_the_request_timeout_the_refusal_stands() -> None:
    producer = Refusing(refusals=10_000)
    with pytest.raises(KafkaTimeoutError):
        await published(producer, queue_seconds=0.05)
    assert producer.sent == [] and 1 < producer.tries < 10_000
