"""What a chaos run reads off the log and the positions afterwards: how far behind the projections are, and
which records were dead-lettered."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from events.deadletters import DeadLettered
from events.registry import REGISTRY
from events.topics import Topics
from jobmeter.settings import Settings
from projections.catalog import PROJECTIONS
from projections.log import LogReader
from services.runtime import PROJECTION_SERVICES


async def records_behind(settings: Settings) -> int:
    """Records not yet folded, summed over every projection and partition of its topics."""
    topics = Topics(settings.jobmeter_topic_prefix)
    names = sorted({topics.name(t) for s in PROJECTION_SERVICES.values() for t in PROJECTIONS[s].topics})
    # The consumer's own metadata only covers what it is assigned; the admin client describes any topic.
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    await consumer.start()
    conn = await asyncpg.connect(settings.database_url)
    try:
        described = await admin.describe_topics(names)
        parts = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
        ends = await consumer.end_offsets(parts)
        behind = 0
        for service in PROJECTION_SERVICES.values():
            projection = PROJECTIONS[service]
            mine = {topics.name(t) for t in projection.topics}
            rows = await conn.fetch(f'SELECT topic, partition, next_offset FROM "{projection.schema}".positions')  # noqa: S608
            stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
            behind += sum(max(0, end - stored.get((tp.topic, tp.partition), 0)) for tp, end in ends.items()
                          if tp.topic in mine)
        return behind
    finally:
        await conn.close()
        await consumer.stop()
        await admin.close()


async def count_dead_letters(settings: Settings, topic: str, consumer_name: str) -> int:
    """Distinct letters from one consumer: a redelivered record dead-lettered twice shares its event id."""
    seen: set[Any] = set()
    async with LogReader(settings.kafka_bootstrap_servers) as reader:
        async for batch in reader.read_to_end([topic]):
            for record in batch:
                envelope, letter = REGISTRY.decode(record.value or b"")
                if isinstance(letter, DeadLettered) and letter.consumer == consumer_name:
                    seen.add(envelope.event_id)
    return len(seen)
