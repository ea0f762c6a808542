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
from typing import Any

from aiokafka import AIOKafkaProducer

from events.envelope import Envelope, EnvelopeWriter, Event, utcnow
from events.lanes import Lane
from events.topics import Topics

MAX_CHOSEN = 100_000  # keys whose partition a publisher keeps per topic (~100 bytes each)
REQUEST_TIMEOUT_MS = 40_000  # aiokafka's default, said here: it also bounds how long a batch waits to be queued


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
        self._chosen: dict[str, tuple[set[int], dict[bytes, int]]] = {}  # see `_partitions_of`
        self._lanes: dict[tuple[str, int], Lane] = {}
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
            max_batch_size=256 * 1024,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )
        self._queue_seconds = REQUEST_TIMEOUT_MS / 1000

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        entering = [task for lane in self._lanes.values() for task in lane.entering]
        if entering:
            await asyncio.wait(entering)  # every record a call added is handed to the producer, which flushes it
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
        if event_ids is None:
            ids = [event.natural_id() or uuid.uuid4() for event in events]
        else:
            ids = [given or event.natural_id() or uuid.uuid4() for event, given in zip(events, event_ids, strict=True)]
        await self.publish_identified(events, [str(event_id) for event_id in ids])
        return ids

    async def publish_identified(self, events: Sequence[Event], event_ids: Sequence[str]) -> None:
        """`publish_many` for events whose ids the caller made, as the envelope's text (`natural_event_id_text`):
        no UUID object made and formatted per event where only its text goes out."""
        writer = EnvelopeWriter(producer=self.producer_name, occurred_at=utcnow())
        values = writer.encode_many(events, event_ids)
        keys = [event.partition_key().encode() for event in events]
        named = {topic: self.topics.name(topic) for topic in {event.topic for event in events}}
        topics = [named[event.topic] for event in events]
        await self._send_batches(zip(topics, keys, values, strict=True))

    async def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Bytes as they are (benchmarks compare against this)."""
        await self.send_raw_many([(topic, key, value)])

    async def send_raw_many(self, records: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """Already-encoded envelopes (an outbox's rows), in order; waits until Kafka has every one."""
        await self._send_batches(records)

    async def _send_batches(self, records: Iterable[tuple[str, bytes | None, bytes]]) -> None:
        """Records added to their partition's lane (`events.lanes`) instead of one `send` each, and waited for until
        Kafka acknowledged every one. Profiled under HTTP ingest, `send` cost more per record than building and
        encoding the envelope: a partitioner hash in Python, a metadata wait and a future per record. A lane's batch
        goes through the same accumulator and sender as `send` (acks=all, idempotent sequence numbers given when it
        is drained), to the partition `send` would choose for its key, in the call's order.
        """
        producer, lanes = self._producer, self._lanes
        waits: set[asyncio.Future[Any]] = set()
        last_topic = None
        for topic, key, value in records:
            if topic != last_topic:  # one topic a call, as a rule: its look-ups made once
                last_topic = topic
                await producer.partitions_for(topic)  # waits for the topic's metadata, as `send` does
                chosen = self._partitions_of(topic)
            partition = chosen.get(key)  # type: ignore[arg-type]  # a None key is never stored: not found
            if partition is None:
                partition = producer._partition(topic, None, key, value, key, value)
                if key is not None:
                    chosen[key] = partition
            lane = lanes.get((topic, partition))
            if lane is None:
                lane = lanes[topic, partition] = Lane(producer, topic, partition, queue_seconds=self._queue_seconds)
            waits.add(lane.append(key, value))
        if waits:
            # Not gather: a caller that stops waiting (a deadline) must not cancel a batch other calls share.
            await asyncio.wait(waits)
            for delivered in waits:
                delivered.result()

    def _partitions_of(self, topic: str) -> dict[bytes, int]:
        """The partition the producer chose for each key of `topic`, kept from call to call while the topic's
        partitions stay the same: its default partitioner (the one this producer has) maps a key to a partition
        by the key's murmur2 hash and the list of all partitions alone, and that hash, in pure Python, was the
        largest single cost of a publish (py-spy under HTTP ingest: 10 % of the app's time, for ~300 accounts a
        call). Bounded: past MAX_CHOSEN keys the topic's choices start again."""
        partitions = self._producer._metadata.partitions_for_topic(topic)
        kept = self._chosen.get(topic)
        if kept is None or kept[0] != partitions or len(kept[1]) > MAX_CHOSEN:
            kept = self._chosen[topic] = (set(partitions or ()), {})
        return kept[1]
