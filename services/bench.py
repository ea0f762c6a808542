"""Benchmarks against the real stack: what ingest and the ledger fold cost, and what they are compared with.

Every run works in a scratch slice of the stack, a database and a topic prefix of its own (as the integration
tests do), and removes both when it ends. Figures are events per second of wall time from one run on this
machine: compare them across commits on one machine, not across machines.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import os
import pstats
import random
import resource
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from events.codec import encode
from events.envelope import Envelope
from events.jobs import JobCompleted, job_event_id
from events.publisher import JSON_HEADERS, Publisher
from events.registry import REGISTRY
from events.topics import Topics, ensure_topics
from jobmeter.settings import Settings
from projections.db import create_pool, quote_schema
from projections.fold import Folder
from projections.ledger.projection import APPLY_JOBS, UsageLedger, job_rows
from projections.migrate import migrate
from projections.records import RawRecord, Recorded, logged_at

PRODUCER = "jobmeter-bench"
ACCOUNTS = 500
FOLD_BATCH = 2000  # what the live consumer takes per batch (JOBMETER_BATCH_MAX_RECORDS)
STALL_SECONDS = 60.0


@dataclass(frozen=True)
class Rate:
    events: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        return {"events": self.events, "seconds": round(self.seconds, 3), "events_per_s": round(self.per_second)}


async def timed(work: Awaitable[int]) -> Rate:
    """Run `work` (which returns how many events it handled) and time it."""
    started = time.perf_counter()
    events = await work
    return Rate(events, time.perf_counter() - started)


# --- a scratch slice of the stack ------------------------------------------------------------------------


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@asynccontextmanager
async def scratch(settings: Settings) -> AsyncIterator[Settings]:
    """Settings for a fresh database and topic prefix; both are dropped on the way out, whatever happened."""
    tag = uuid.uuid4().hex[:10]
    database = f"jobmeter_bench_{tag}"
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    scoped = settings.model_copy(
        update={"database_url": with_database(settings.database_url, database), "jobmeter_topic_prefix": f"bench{tag}."}
    )
    try:
        yield scoped
    finally:
        await delete_topics(settings.kafka_bootstrap_servers, scoped.jobmeter_topic_prefix)
        admin = await asyncpg.connect(settings.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


async def delete_topics(bootstrap_servers: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


# --- generated jobs --------------------------------------------------------------------------------------


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
    """Send in chunks the way publish_many does (queue a chunk, wait for all of it); returns the count."""
    sent = 0
    while True:
        batch = [m for _, m in zip(range(chunk), messages, strict=False)]
        if not batch:
            return sent
        futures = [await producer.send(topic, value=v, key=k, headers=JSON_HEADERS) for k, v in batch]
        await asyncio.gather(*futures)
        sent += len(batch)


async def load_topic(settings: Settings, topic: str, n: int, apis: Sequence[str]) -> None:
    producer = raw_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await send_raw(producer, topic, job_messages(n, apis), chunk=5000)
    finally:
        await producer.stop()


# --- memory ----------------------------------------------------------------------------------------------


class PeakRss:
    """Peak resident memory of this process over a block: Linux's VmHWM, reset at the start of the block
    (writing 5 to /proc/self/clear_refs); where that is refused, ru_maxrss, the peak of the whole process."""

    def __enter__(self) -> PeakRss:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM, reset at the start"
        except OSError:
            self.method = "ru_maxrss (whole process lifetime)"
        self.before_mb = _status_mb("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = _status_mb("VmHWM") if self.method.startswith("VmHWM") else None
        self.peak_mb = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def as_json(self) -> dict[str, Any]:
        before = None if self.before_mb is None else round(self.before_mb)
        return {"peak_rss_mb": round(self.peak_mb), "rss_before_mb": before, "method": self.method}


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# --- bench ingest ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(settings: Settings) -> dict[str, str]:
    """What a `jobmeter run ...` child needs to work in the same scratch slice as this process."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "JOBMETER_TOPIC_PREFIX": settings.jobmeter_topic_prefix,
        "JOBMETER_PARTITIONS": str(settings.jobmeter_partitions),
        "JOBMETER_INGEST_TOKEN": settings.jobmeter_ingest_token.get_secret_value(),
        "LOG_LEVEL": "WARNING",  # an access-log line per request would be measured too
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p
        ),
    }


@asynccontextmanager
async def http_app(settings: Settings) -> AsyncIterator[str]:
    """`jobmeter run http` in a child process (the app under uvicorn, as deployed); yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty child must never block on a full pipe
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "run", "http", "--port", str(port),
        env=service_env(settings), stdout=log, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            deadline = time.monotonic() + 90
            while True:
                if proc.returncode is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"the HTTP app did not come up:\n{log.read().decode(errors='replace')[-3000:]}")
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        yield base
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def post_batches(base: str, token: str, bodies: list[bytes], concurrency: int) -> int:
    """POST every body (a JSON array of jobs); returns how many jobs were accepted."""
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:

        async def post(body: bytes) -> int:
            async with gate:
                response = await client.post("/v1/jobs/completed", content=body)
            if response.status_code != 202:
                raise RuntimeError(f"ingest answered {response.status_code}: {response.text[:500]}")
            return int(response.json()["accepted"])

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

    @property
    def publisher_over_raw(self) -> float:
        return self.publisher.per_second / self.raw.per_second

    def as_json(self) -> dict[str, Any]:
        return {
            "http_batch_ingest": {
                **self.http.as_json(), "batch": self.http_batch, "concurrency": self.http_concurrency
            },
            "publisher": {**self.publisher.as_json(), "chunk": self.chunk},
            "raw_aiokafka": {**self.raw.as_json(), "chunk": self.chunk},
            "publisher_over_raw": round(self.publisher_over_raw, 3),
            "target": "publisher within 2x of raw: publisher_over_raw >= 0.5",
        }


async def bench_ingest(
    settings: Settings, events: int, *, http_batch: int = 500, http_concurrency: int = 4, chunk: int = 1000,
    profile: bool = False,
) -> IngestFigures:
    async with scratch(settings) as s:
        topics = Topics(s.jobmeter_topic_prefix)
        await ensure_topics(s.kafka_bootstrap_servers, topics, s.jobmeter_partitions)
        apis = s.jobmeter_apis

        over_http = jobs(events, apis, label="http")
        bodies = [
            json.dumps([j.model_dump(mode="json") for j in over_http[i : i + http_batch]]).encode()
            for i in range(0, events, http_batch)
        ]
        async with http_app(s) as base:
            http = await timed(post_batches(base, s.jobmeter_ingest_token.get_secret_value(), bodies, http_concurrency))
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
    return IngestFigures(http, by_publisher, raw, http_batch, http_concurrency, chunk, report)


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


# --- bench ledger ----------------------------------------------------------------------------------------


async def consume(
    settings: Settings, topic: str, expect: int, handle: Callable[[list[RawRecord]], Awaitable[None]]
) -> Rate:
    """Read `topic` from offset zero with a plain consumer (no group), batch by batch into `handle`; timed
    from the first fetch, so connecting to Kafka is not part of the figure."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen, last = 0, time.monotonic()
    started = time.perf_counter()
    try:
        while seen < expect:
            batches = await consumer.getmany(timeout_ms=500, max_records=FOLD_BATCH)
            records = [RawRecord.of(r) for part in batches.values() for r in part][: expect - seen]
            if not records:
                if time.monotonic() - last > STALL_SECONDS:
                    raise RuntimeError(f"{topic}: stuck at {seen} of {expect} records")
                continue
            await handle(records)
            seen, last = seen + len(records), time.monotonic()
        return Rate(seen, time.perf_counter() - started)
    finally:
        await consumer.stop()


async def fresh_ledger(pool: asyncpg.Pool, dsn: str, schema: str) -> Folder:
    await migrate(dsn, schema, UsageLedger.migrations)
    return Folder(UsageLedger(), pool, schema=schema)


async def full_fold(settings: Settings, pool: asyncpg.Pool, topic: str, events: int, schema: str) -> Rate:
    folder = await fresh_ledger(pool, settings.database_url, schema)

    async def fold(records: list[RawRecord]) -> None:
        await folder.fold(records)

    return await consume(settings, topic, events, fold)


RAW_TABLE = """CREATE TABLE raw_jobs (api text, job_id text, account_id text, channel text, mode text,
                                      completed_at timestamptz, logged_at timestamptz, event_id uuid)"""
RAW_COLUMNS = ["api", "job_id", "account_id", "channel", "mode", "completed_at", "logged_at", "event_id"]


async def raw_pipe(settings: Settings, pool: asyncpg.Pool, topic: str, events: int) -> Rate:
    """The floor: the same rows straight from JSON into a plain table by COPY; no model, no dedupe, no positions."""
    async with pool.acquire() as conn:
        await conn.execute(RAW_TABLE)

    async def copy(records: list[RawRecord]) -> None:
        rows = []
        for r in records:
            envelope = json.loads(r.value or b"{}")
            d = envelope["data"]
            rows.append((
                d["api"], d["job_id"], d["account_id"], d["channel"], d["mode"],
                datetime.fromisoformat(d["completed_at"]), logged_at(r.timestamp), uuid.UUID(envelope["event_id"]),
            ))
        async with pool.acquire() as conn:
            await conn.copy_records_to_table("raw_jobs", records=rows, columns=RAW_COLUMNS)

    return await consume(settings, topic, events, copy)


async def naive_fold(settings: Settings, pool: asyncpg.Pool, topic: str, events: int, schema: str) -> Rate:
    """What a first attempt looks like: decode one event, one INSERT (the ledger's own statement), commit."""
    await migrate(settings.database_url, schema, UsageLedger.migrations)
    async with pool.acquire() as conn:
        await conn.execute(f"SET search_path TO {quote_schema(schema)}, public")
        try:

            async def one_by_one(records: list[RawRecord]) -> None:
                for r in records:
                    envelope, event = REGISTRY.decode(r.value or b"")
                    item = Recorded(r.topic, r.partition, r.offset, logged_at(r.timestamp), envelope, event)
                    await conn.execute(APPLY_JOBS, *job_rows([item]))  # outside a transaction: commits alone

            return await consume(settings, topic, events, one_by_one)
        finally:
            await conn.execute("RESET search_path")


@dataclass(frozen=True)
class LedgerFigures:
    full: Rate
    raw: Rate
    naive: Rate
    naive_extrapolated: bool
    memory: PeakRss
    replay: Rate
    replay_memory: PeakRss

    def as_json(self) -> dict[str, Any]:
        events = self.full.events
        naive = {**self.naive.as_json(), "extrapolated": self.naive_extrapolated}
        if self.naive_extrapolated:
            naive["note"] = f"measured on the first {self.naive.events} events; seconds for all {events} extrapolated"
            naive["seconds_for_all_extrapolated"] = round(events / self.naive.per_second, 1)
        replay = {**self.replay.as_json(), **self.replay_memory.as_json()}
        if self.replay.events != 1_000_000:
            replay["note"] = f"measured on {self.replay.events} events; the 1,000,000 figure is extrapolated"
            replay["seconds_for_1m_extrapolated"] = round(1_000_000 / self.replay.per_second, 1)
        return {
            "events": events,
            "full_projection": {**self.full.as_json(), **self.memory.as_json()},
            "raw_pipe": self.raw.as_json(),
            "naive_projection": naive,
            "full_over_raw": round(self.full.per_second / self.raw.per_second, 3),
            "full_over_naive": round(self.full.per_second / self.naive.per_second, 1),
            "targets": {"full_over_raw": ">= 0.5", "full_over_naive": ">= 10"},
            "replay": replay,
        }


async def bench_ledger(
    settings: Settings, events: int, *, naive_events: int = 5000, replay_events: int = 1_000_000
) -> LedgerFigures:
    async with scratch(settings) as s:
        apis = s.jobmeter_apis
        check_job_messages(apis)
        topics, replay_topics = Topics(s.jobmeter_topic_prefix), Topics(f"{s.jobmeter_topic_prefix}replay.")
        for t in (topics, replay_topics):
            await ensure_topics(s.kafka_bootstrap_servers, t, s.jobmeter_partitions)
        await load_topic(s, topics.jobs, events, apis)
        pool = await create_pool(s.database_url)
        try:
            with PeakRss() as memory:
                full = await full_fold(s, pool, topics.jobs, events, "ledger")
            raw = await raw_pipe(s, pool, topics.jobs, events)
            subset = min(events, naive_events)
            naive = await naive_fold(s, pool, topics.jobs, subset, "ledger_naive")

            await load_topic(s, replay_topics.jobs, replay_events, apis)
            with PeakRss() as replay_memory:
                replay = await full_fold(s, pool, replay_topics.jobs, replay_events, "ledger_replay")
        finally:
            await pool.close()
    return LedgerFigures(full, raw, naive, subset < events, memory, replay, replay_memory)
