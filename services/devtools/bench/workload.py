"""Generated jobs for the benches, and sending them to Kafka as raw bytes with the publisher's producer settings."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from events.codec import encode
from events.envelope import Envelope
from events.jobs import JobCompleted, job_event_id
from events.lanes import JSON_HEADERS
from events.registry import REGISTRY
from jobmeter.settings import Settings

PRODUCER = "jobmeter-bench"
ACCOUNTS = 500


def jobs(n: int, apis: Sequence[str], *, label: str, seed: int = 7) -> list[JobCompleted]:
    """`n` distinct jobs over ~500 accounts, every API and both channels, completed within the last day."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    return [
        JobCompleted(
            account_id=f"acct-{rng.randrange(ACCOUNTS):03d}", api=apis[i % len(apis)], job_id=f"{label}-{i:08d}",
            channel=rng.choice(("direct", "rapidapi")), mode=rng.choice(("sync", "async")),
            completed_at=now - timedelta(seconds=rng.randrange(86_400)),
        )
        for i in range(n)
    ]


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # how pydantic writes a whole-second UTC time


def job_messages(n: int, apis: Sequence[str], *, seed: int = 7) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of `n` distinct JobCompleted, byte for byte what the publisher sends (checked below), at
    a few microseconds each instead of the ~40 it takes to build, wrap and encode a model: loading a million
    events for a replay must not take longer than the replay."""
    rng = random.Random(seed)
    occurred = datetime.now(UTC).replace(microsecond=0)
    start = occurred - timedelta(days=30)
    for i in range(n):
        account, api, job_id = f"acct-{rng.randrange(ACCOUNTS):03d}", apis[i % len(apis)], f"bench-{i:09d}"
        data = {
            "account_id": account, "api": api, "job_id": job_id, "channel": rng.choice(("direct", "rapidapi")),
            "mode": rng.choice(("sync", "async")), "completed_at": _stamp(start + timedelta(seconds=i * 2)),
        }
        envelope = {
            "event_id": str(job_event_id(api, job_id)), "type": "JobCompleted", "version": 1,
            "occurred_at": _stamp(occurred), "producer": PRODUCER, "data": data,
        }
        yield account.encode(), json.dumps(envelope, separators=(",", ":")).encode()


def check_job_messages(apis: Sequence[str]) -> None:
    """The shortcut above must produce exactly the codec's bytes; refuse to measure anything else."""
    for _, value in job_messages(3, apis):
        envelope, job = REGISTRY.decode(value)
        expected = encode(Envelope.wrap(job, producer=PRODUCER, occurred_at=envelope.occurred_at))
        if expected != value:
            raise RuntimeError(f"bench messages drifted from the codec:\n{value!r}\n{expected!r}")


# --- producing -------------------------------------------------------------------------------------------


def raw_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    """The publisher's producer settings exactly (idempotent, acks=all, linger, batch size), nothing on top."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, enable_idempotence=True, acks="all", linger_ms=5,
        max_batch_size=256 * 1024,
    )


async def send_raw(
    producer: AIOKafkaProducer, topic: str, messages: Iterator[tuple[bytes, bytes]], chunk: int
) -> int:
    """Send in chunks the way publish_many does (a chunk queued as one batch per partition, waited for whole) with
    nothing else: each key's partition worked out once per run, the batches filled with the bytes as they are.
    aiokafka's batch API is the fastest way it offers to send; per-record `send` measured ~30 % slower here, and
    the publisher uses batches too, so a ratio against `send` would flatter it. Returns the count."""
    partitions = sorted(await producer.partitions_for(topic))
    where = DefaultPartitioner()
    partition_of: dict[bytes, int] = {}
    sent = 0
    while True:
        chunk_of = [m for _, m in zip(range(chunk), messages, strict=False)]
        if not chunk_of:
            return sent
        batches: dict[int, list[BatchBuilder]] = {}
        for key, value in chunk_of:
            partition = partition_of.get(key)
            if partition is None:
                partition = partition_of[key] = where(key, partitions, partitions)
            builders = batches.setdefault(partition, [])
            if not builders or builders[-1].append(timestamp=None, key=key, value=value, headers=JSON_HEADERS) is None:
                builders.append(producer.create_batch())
                builders[-1].append(timestamp=None, key=key, value=value, headers=JSON_HEADERS)
        futures = [await producer.send_batch(b, topic, partition=p) for p, bs in batches.items() for b in bs]
        await asyncio.gather(*futures)
        sent += len(chunk_of)


async def load_topic(settings: Settings, topic: str, n: int, apis: Sequence[str]) -> None:
    producer = raw_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await send_raw(producer, topic, job_messages(n, apis), chunk=5000)
    finally:
        await producer.stop()

