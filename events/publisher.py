"""The Python publisher upstream services use: an idempotent aiokafka producer, acks=all, keyed by account.

`publish` returns only once Kafka has the event, so a caller that acknowledges after it (the HTTP ingest,
an upstream API) never acknowledges something that can still be lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType

from aiokafka import AIOKafkaProducer

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
        futures = [
            await self._producer.send(
                self.topics.name(event.topic),
                value=writer.encode(event, eid),
                key=event.partition_key().encode(),
                headers=JSON_HEADERS,
            )
            for event, eid in zip(events, ids, strict=True)
        ]
        await asyncio.gather(*futures)
        return ids

    async def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Bytes as they are (benchmarks compare against this)."""
        await self.send_raw_many([(topic, key, value)])

    async def send_raw_many(self, records: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """Already-encoded envelopes (an outbox's rows), in order; waits until Kafka has every one."""
        futures = [
            await self._producer.send(topic, value=value, key=key, headers=JSON_HEADERS)
            for topic, key, value in records
        ]
        await asyncio.gather(*futures)

