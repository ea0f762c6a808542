"""A mounted fold that fails gives its whole batch back to Kafka: every partition of the batch is read again.

The consumer's ack policy (NACK_ON_ERROR, services/platform/consumers.py) has FastStream seek each partition of a
failed batch back to its first record; without it, the batch's records would not come again until a restart (the
positions in Postgres keep them from being lost, not from waiting).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker

from events.codec import encode
from events.envelope import Envelope, Event
from events.jobs import JobCompleted
from jobmeter.settings import Settings
from projections.fold import Folder
from projections.records import Recorded
from services.platform.consumers import mount_projection
from tests.integration.helpers import eventually
from tests.integration.probe import Probe, probe_pool

pytestmark = pytest.mark.integration


class FailsFirst(Probe):
    """Refuses its first batch with an error that is neither the data's nor transient: the batch goes back."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, str]]] = []

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        jobs = [(e.partition, e.event.job_id) for e in events if isinstance(e.event, JobCompleted)]
        self.batches.append(jobs)
        if len(self.batches) == 1:
            raise RuntimeError("the first batch fails")
        await super().apply(conn, events)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    async with probe_pool(settings) as opened:
        yield opened


async def two_partitions_of_jobs(settings: Settings, topic: str, per_partition: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for partition in (0, 1):
            for n in range(per_partition):
                job = JobCompleted(account_id="acme", api="extract", job_id=f"p{partition}-{n}", channel="direct",
                                   mode="sync", completed_at=datetime(2026, 12, 1, tzinfo=UTC))
                await producer.send_and_wait(topic, encode(Envelope.wrap(job, producer="test")), partition=partition)
    finally:
        await producer.stop()


async def test_a_failed_batch_comes_back_whole(settings: Settings, pool: asyncpg.Pool) -> None:
    topic = f"redelivery-{uuid.uuid4().hex[:8]}"
    await two_partitions_of_jobs(settings, topic, per_partition=3)
    projection = FailsFirst()
    folder = Folder(projection, pool)
    broker = KafkaBroker(settings.kafka_bootstrap_servers)
    mount_projection(broker, lambda: folder, topics=[topic], group=f"{topic}.probe", max_records=100,
                     timeout_ms=100, title="probe")
    async with broker:
        await broker.start()

        async def seen() -> set[str]:
            async with pool.acquire() as conn:
                return {r["job_id"] for r in await conn.fetch("SELECT job_id FROM probe.seen")}

        everything = {f"p{p}-{n}" for p in (0, 1) for n in range(3)}
        assert await eventually(seen, lambda s: s == everything, timeout=30) == everything
    first = projection.batches[0]
    assert {partition for partition, _ in first} == {0, 1}, "the failed batch must span both partitions"
    assert sorted(job for batch in projection.batches[1:] for _, job in batch) == sorted(everything)
