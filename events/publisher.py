"""The Python publisher upstream services use: an idempotent aiokafka producer, acks=all, keyed by account.

`publish` returns only once Kafka has the event, so a caller that acknowledges after it (the HTTP ingest,
an upstream API) never acknowledges something that can still be lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from types import TracebackType

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from events.envelope import Envelope, EnvelopeWriter, Event, utcnow
from events.topics import Topics

JSON_HEADERS = [("content-type", b"application/json")]


class Publisher:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        producer: str,
        topics: Topics | None = None,
        linger_ms: int = 5,
    ) -> None:
        self.producer_name = producer
        self.topics = topics or Topics()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
            max_batch_size=256 * 1024,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def envelope(
        self, event: Event, *, event_id: uuid.UUID | None = None, occurred_at: datetime | None = None
    ) -> Envelope:
        return Envelope.wrap(event, producer=self.producer_name, event_id=event_id, occurred_at=occurred_at)

    async def publish(self, event: Event, *, event_id: uuid.UUID | None = None) -> uuid.UUID:
        """Publish one event and wait until Kafka has it; returns its event id."""
        (published,) = await self.publish_many([event], event_ids=[event_id])
        return published

    async def publish_many(
        self, events: Sequence[Event], *, event_ids: Sequence[uuid.UUID | None] | None = None
    ) -> list[uuid.UUID]:
        """Publish a batch and wait until Kafka has every one (raises if any send failed); returns the event ids.

        One `occurred_at` for the whole call: the batch was published at one moment."""
        ids = [
            given or event.natural_id() or uuid.uuid4()
            for event, given in zip(events, event_ids or [None] * len(events), strict=True)
        ]
        writer = EnvelopeWriter(producer=self.producer_name, occurred_at=utcnow())
        await self._send_batches(
            (self.topics.name(event.topic), event.partition_key().encode(), writer.encode(event, eid))
            for event, eid in zip(events, ids, strict=True)
        )
        return ids

    async def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Bytes as they are (benchmarks compare against this)."""
        await self.send_raw_many([(topic, key, value)])

    async def send_raw_many(self, records: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """Already-encoded envelopes (an outbox's rows), in order; waits until Kafka has every one."""
        await self._send_batches(records)

    async def _send_batches(self, records: Iterable[tuple[str, bytes | None, bytes]]) -> None:
        """Records queued as one batch per partition (more where one fills up) instead of one `send` each, and
        waited for until Kafka acknowledged every batch. Profiled under HTTP ingest, `send` cost more per record
        than building and encoding the envelope: a partitioner hash in Python, a metadata wait and a future per
        record. A batch goes through the same accumulator and sender as `send` (acks=all, idempotent sequence
        numbers given when it is drained), to the partition `send` would choose for its key, in the call's order.
        """
        producer = self._producer
        known: set[str] = set()
        partitions: dict[tuple[str, bytes], int] = {}
        batches: dict[tuple[str, int], list[BatchBuilder]] = {}
        for topic, key, value in records:
            if topic not in known:
                await producer.partitions_for(topic)  # waits for the topic's metadata, as `send` does
                known.add(topic)
            partition = partitions.get((topic, key)) if key is not None else None
            if partition is None:
                # the producer's own choice (its partitioner over the same metadata), once per key and call
                partition = producer._partition(topic, None, key, value, key, value)
                if key is not None:
                    partitions[(topic, key)] = partition
            builders = batches.setdefault((topic, partition), [])
            if not builders or builders[-1].append(timestamp=None, key=key, value=value, headers=JSON_HEADERS) is None:
                builders.append(producer.create_batch())
                if builders[-1].append(timestamp=None, key=key, value=value, headers=JSON_HEADERS) is None:
                    raise ValueError(f"a record of {len(value)} bytes does not fit in a batch for {topic}")
        futures = [
            await producer.send_batch(builder, topic, partition=partition)
            for (topic, partition), builders in batches.items()
            for builder in builders
        ]
        await asyncio.gather(*futures)

