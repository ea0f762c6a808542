"""`jobmeter bench ingest`: events/s of HTTP batch ingest, the Python publisher and a raw aiokafka producer."""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import pstats
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import httpx

from events.codec import encode
from events.jobs import JobCompleted
from events.publisher import Publisher
from events.topics import Topics, ensure_topics
from jobmeter.settings import Settings
from services.devtools.bench.rates import Rate, timed
from services.devtools.bench.workload import PRODUCER, jobs, raw_producer, send_raw
from services.devtools.sandbox import http_child, sandbox


async def post_batches(base: str, token: str, bodies: list[bytes], concurrency: int) -> int:
    """POST every body (a JSON array of jobs); returns how many jobs were accepted (invalid items of a batch are
    refused one by one, and a batch of nothing valid is a 422, not an error of the bench)."""
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:

        async def post(body: bytes) -> int:
            async with gate:
                response = await client.post("/v1/jobs/completed", content=body)
            if response.status_code not in (202, 422):
                raise RuntimeError(f"ingest answered {response.status_code}: {response.text[:500]}")
            return int(response.json().get("accepted", 0))

        return sum(await asyncio.gather(*(post(b) for b in bodies)))


async def publish_chunks(publisher: Publisher, events: list[JobCompleted], chunk: int) -> int:
    for i in range(0, len(events), chunk):
        await publisher.publish_many(events[i : i + chunk])
    return len(events)


@dataclass(frozen=True)
class IngestFigures:
    http: Rate
    publisher: Rate
    raw: Rate
    http_batch: int
    http_concurrency: int
    chunk: int
    profile: str | None = None
    http_workers: int = 1

    @property
    def publisher_over_raw(self) -> float:
        return self.publisher.per_second / self.raw.per_second

    @property
    def http_over_raw(self) -> float:
        return self.http.per_second / self.raw.per_second

    def as_json(self) -> dict[str, Any]:
        return {
            "http_batch_ingest": {
                **self.http.as_json(), "batch": self.http_batch, "concurrency": self.http_concurrency,
                "workers": self.http_workers,
            },
            "publisher": {**self.publisher.as_json(), "chunk": self.chunk},
            "raw_aiokafka": {**self.raw.as_json(), "chunk": self.chunk},
            "publisher_over_raw": round(self.publisher_over_raw, 3),
            "http_over_raw": round(self.http_over_raw, 3),
            "target": "publisher and HTTP ingest within 2x of raw: publisher_over_raw, http_over_raw >= 0.5",
        }


async def bench_ingest(
    settings: Settings, events: int, *, http_batch: int = 500, http_concurrency: int = 4, chunk: int = 1000,
    profile: bool = False, http_workers: int = 1,
) -> IngestFigures:
    async with sandbox(settings) as s:
        topics = Topics(s.jobmeter_topic_prefix)
        await ensure_topics(s.kafka_bootstrap_servers, topics, s.jobmeter_partitions)
        apis = s.jobmeter_apis

        over_http = jobs(events, apis, label="http")
        bodies = [
            json.dumps([j.model_dump(mode="json") for j in over_http[i : i + http_batch]]).encode()
            for i in range(0, events, http_batch)
        ]
        async with http_child(s, workers=http_workers) as app:
            token = s.jobmeter_ingest_token.get_secret_value()
            http = await timed(post_batches(app.url, token, bodies, http_concurrency))
        if http.events != events:
            raise RuntimeError(f"HTTP ingest accepted {http.events} of {events} distinct jobs")

        published = jobs(events, apis, label="pub")
        async with Publisher(s.kafka_bootstrap_servers, producer=PRODUCER, topics=topics) as publisher:
            await publisher.publish_many(jobs(10, apis, label="warm"))  # metadata and connections, not measured
            by_publisher = await timed(publish_chunks(publisher, published, chunk))
            # The same events as bytes, encoded before the clock starts: only the sending is left to time.
            encoded = [(j.partition_key().encode(), encode(publisher.envelope(j))) for j in published]
            report = await _profiled(publish_chunks(publisher, published, chunk)) if profile else None

        producer = raw_producer(s.kafka_bootstrap_servers)
        await producer.start()
        try:
            await send_raw(producer, topics.jobs, iter(encoded[:10]), chunk)
            raw = await timed(send_raw(producer, topics.jobs, iter(encoded), chunk))
        finally:
            await producer.stop()
    return IngestFigures(http, by_publisher, raw, http_batch, http_concurrency, chunk, report, http_workers)


async def _profiled(work: Awaitable[Any], lines: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        await work
    finally:
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(lines)
    return out.getvalue()
