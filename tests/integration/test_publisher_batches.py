"""The publisher queues records in one batch a partition, shared by the calls of the moment: each record must still
land where a plain `send` puts its key, in its call's order, every one acknowledged before the call returns, also
when aiokafka refuses to queue a batch at first."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner

from events.jobs import JobCompleted
from events.publisher import Publisher
from events.registry import REGISTRY
from events.topics import Topics, ensure_topics
from jobmeter.settings import Settings
from tests.integration.helpers import job, read_topic

pytestmark = pytest.mark.integration


def job_ids_by_key(records: list[Any]) -> dict[bytes, list[str]]:
    """The jobs' ids each key's records hold, in log order (a key's records share a partition)."""
    by_key: dict[bytes, list[str]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        decoded = REGISTRY.decode(record.value)[1]
        assert isinstance(decoded, JobCompleted)
        by_key[record.key].append(decoded.job_id)
    return by_key


async def test_batches_land_on_the_keys_partitions_in_order_and_fill_past_one_batch(settings: Settings) -> None:
    topics = Topics(settings.jobmeter_topic_prefix)
    await ensure_topics(settings.kafka_bootstrap_servers, topics, settings.jobmeter_partitions)
    # 40 accounts over the partitions; one account with 3,000 jobs (~750 kB) overflows a 256 kB batch
    events = [JobCompleted.model_validate(job(f"acct-{i % 40}", f"b-{i}")) for i in range(800)]
    events += [JobCompleted.model_validate(job("big", f"big-{i:05d}")) for i in range(3000)]
    async with Publisher(settings.kafka_bootstrap_servers, producer="test", topics=topics) as publisher:
        ids = await publisher.publish_many(events)
        partitions = sorted(await publisher._producer.partitions_for(topics.jobs))
    assert len(partitions) > 1
    records = await read_topic(settings, topics.jobs, expect=len(events))
    assert len(records) == len(events)  # every record was in Kafka when the call returned
    where = DefaultPartitioner()
    by_key: dict[bytes, list[str]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.partition == where(record.key, partitions, partitions), record.key
        assert record.headers == (("content-type", b"application/json"),)
        decoded = REGISTRY.decode(record.value)[1]
        assert isinstance(decoded, JobCompleted)
        by_key[record.key].append(decoded.job_id)
    for key, job_ids in by_key.items():  # per key, the order of the call
        assert job_ids == [e.job_id for e in events if e.account_id == key.decode()], key
    assert {REGISTRY.decode(r.value)[0].event_id for r in records} == set(ids)


async def test_a_batch_refused_by_the_accumulator_is_queued_again_once_and_lands_once(settings: Settings) -> None:
    topics = Topics(settings.jobmeter_topic_prefix)
    await ensure_topics(settings.kafka_bootstrap_servers, topics, settings.jobmeter_partitions)
    events = [JobCompleted.model_validate(job(f"acct-{i % 8}", f"q-{i}")) for i in range(400)]
    async with Publisher(settings.kafka_bootstrap_servers, producer="test", topics=topics) as publisher:
        accumulator = publisher._producer._message_accumulator
        add_batch, refusals = accumulator.add_batch, [0]

        async def refusing(*args: Any, **kwargs: Any) -> Any:
            # The KafkaTimeoutError aiokafka's own wait raises under load, here for every third batch it is handed.
            refusals[0] += 1
            if refusals[0] % 3 == 1:
                raise KafkaTimeoutError()
            return await add_batch(*args, **kwargs)

        accumulator.add_batch = refusing
        await publisher.publish_many(events)
    assert refusals[0] > 3
    records = await read_topic(settings, topics.jobs, expect=len(events))
    assert len(records) == len(events)  # each once: a refused batch was never sent
    for key, job_ids in job_ids_by_key(records).items():
        assert job_ids == [e.job_id for e in events if e.account_id == key.decode()], key


async def test_concurrent_calls_share_a_batch_a_partition_and_each_lands_once_in_its_order(settings: Settings) -> None:
    topics = Topics(settings.jobmeter_topic_prefix)
    await ensure_topics(settings.kafka_bootstrap_servers, topics, settings.jobmeter_partitions)
    calls = [[JobCompleted.model_validate(job(f"acct-{(c + i) % 12}", f"c{c}-{i}")) for i in range(25)]
             for c in range(40)]
    async with Publisher(settings.kafka_bootstrap_servers, producer="test", topics=topics) as publisher:
        # The topic's metadata known first: the calls below then run side by side.
        await publisher.publish_many([JobCompleted.model_validate(job("acct-0", "warm-up"))])
        accumulator = publisher._producer._message_accumulator
        add_batch, handed = accumulator.add_batch, [0]

        async def counting(*args: Any, **kwargs: Any) -> Any:
            handed[0] += 1
            return await add_batch(*args, **kwargs)

        accumulator.add_batch = counting
        await asyncio.gather(*(publisher.publish_many(events) for events in calls))
        partitions = len(await publisher._producer.partitions_for(topics.jobs))
    # One batch a call and partition would be 40 a partition; the calls share the lanes' open batches instead.
    assert handed[0] <= 2 * partitions
    expected = 1 + sum(map(len, calls))
    records = await read_topic(settings, topics.jobs, expect=expected)
    assert len(records) == expected
    landed = job_ids_by_key(records)
    for events in calls:  # each call's jobs of an account in the call's order
        for key, job_ids in landed.items():
            own = [e.job_id for e in events if e.account_id == key.decode()]
            assert [j for j in job_ids if j in set(own)] == own, key
