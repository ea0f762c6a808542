"""What a chaos run reads off the log and the positions afterwards: how far behind the projections are, and
which records were dead-lettered."""

from __future__ import annotations

from typing import Any

from events.deadletters import DeadLettered
from events.registry import REGISTRY
from events.topics import Topics
from jobmeter.settings import Settings
from projections.catalog import PROJECTIONS
from projections.log import LogReader
from projections.positions import behind
from projections.replay.shadow import read_positions
from services.devtools.databases import projection_connections
from services.engine.runtime import PROJECTION_SERVICES


async def records_behind(settings: Settings) -> int:
    """Records not yet folded, summed over every projection and partition of its topics."""
    topics = Topics(settings.jobmeter_topic_prefix)
    names = sorted({topics.name(t) for s in PROJECTION_SERVICES.values() for t in PROJECTIONS[s].topics})
    async with LogReader(settings.kafka_bootstrap_servers) as reader:
        ends = await reader.high_watermarks(await reader.partitions(names))
    async with projection_connections(settings, PROJECTION_SERVICES) as conns:  # each in its own database
        total = 0
        for service, name in PROJECTION_SERVICES.items():
            projection = PROJECTIONS[name]
            mine = {topics.name(t) for t in projection.topics}
            stored = await read_positions(conns[service], projection.schema)
            total += behind(stored, ends, mine)
        return total


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
