"""One partition's records on their way into the producer: every publish of the moment shares one batch.

aiokafka's accumulator holds one batch a partition, and its sender keeps one produce request a broker in flight,
so a partition takes one batch a round trip. Handed a batch of its own by every call, as `send_batch` is,
concurrent calls to the same partitions queue behind each other, one call a round trip: under load, with a round
trip slowed by busy cores, that was the ceiling of HTTP ingest (its requests, each touching every partition,
waited their turn, some past ingest's deadline: the 503s of `bench engine`, issue 18). A lane instead keeps one
open batch a partition, which every call adds to until the producer takes it: a round trip carries everything
that waited for it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from aiokafka.producer.message_accumulator import BatchBuilder

JSON_HEADERS = [("content-type", b"application/json")]


class Lane:
    """The records for one partition that the producer has not taken yet, in the order they were added."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partition: int, *, queue_seconds: float) -> None:
        self._producer = producer
        self._topic = topic
        self._partition = partition
        self._queue_seconds = queue_seconds
        self._open: BatchBuilder | None = None  # the batch records are added to, not yet taken by the producer
        self._delivered: asyncio.Future[Any] | None = None  # done when Kafka has acknowledged the open batch
        self._entered: asyncio.Future[None] | None = None  # done when the newest batch was taken (or given up on)
        self.entering: set[asyncio.Task[None]] = set()

    def append(self, key: bytes | None, value: bytes) -> asyncio.Future[Any]:
        """Add a record; the future is done when Kafka has acknowledged it (or failed to)."""
        builder, delivered = self._open, self._delivered
        if builder is None or delivered is None or builder.append(timestamp=None, key=key, value=value,
                                                                  headers=JSON_HEADERS) is None:
            builder, delivered = self._start()
            if builder.append(timestamp=None, key=key, value=value, headers=JSON_HEADERS) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit in a batch for {self._topic}")
        return delivered

    def _start(self) -> tuple[BatchBuilder, asyncio.Future[Any]]:
        """A new open batch, handed to the producer after the one before it: a partition's records stay in order."""
        loop = asyncio.get_running_loop()
        builder, delivered, entered = self._producer.create_batch(), loop.create_future(), loop.create_future()
        delivered.add_done_callback(_retrieved)
        task = asyncio.create_task(self._enter(builder, delivered, self._entered, entered))
        self.entering.add(task)
        task.add_done_callback(self.entering.discard)
        self._open, self._delivered, self._entered = builder, delivered, entered
        return builder, delivered

    async def _enter(self, builder: BatchBuilder, delivered: asyncio.Future[Any], after: asyncio.Future[None] | None,
                     entered: asyncio.Future[None]) -> None:
        try:
            if after is not None:
                await after
            queued = await self._queue(builder)
        except asyncio.CancelledError:
            self._taken(builder, entered)
            delivered.cancel()
            raise
        except Exception as error:
            self._taken(builder, entered)
            delivered.set_exception(error)
            return
        self._taken(builder, entered)
        try:
            delivered.set_result(await queued)
        except Exception as error:
            delivered.set_exception(error)

    def _taken(self, builder: BatchBuilder, entered: asyncio.Future[None]) -> None:
        if self._open is builder:
            self._open = None  # no record may join a batch the producer has
        entered.set_result(None)

    async def _queue(self, builder: BatchBuilder) -> asyncio.Future[Any]:
        """`send_batch`, waiting for the partition's slot up to the producer's request timeout, as aiokafka means
        to: its `add_batch` takes the whole time waited so far off that timeout on every pass of its wait loop, so
        with a busy partition it gives up after a fraction of it. Nothing of a batch is sent when it is refused, so
        queueing it again cannot duplicate a record."""
        deadline = time.monotonic() + self._queue_seconds
        while True:
            try:
                queued: asyncio.Future[Any] = await self._producer.send_batch(builder, self._topic,
                                                                               partition=self._partition)
                return queued
            except KafkaTimeoutError:
                if time.monotonic() >= deadline:
                    raise


def _retrieved(future: asyncio.Future[Any]) -> None:
    """A batch whose every caller gave up waiting (ingest's deadline) still ends: its outcome is not an error to
    report a second time."""
    if not future.cancelled():
        future.exception()
