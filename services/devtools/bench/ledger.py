"""`jobmeter bench ledger`: the ledger fold against a raw COPY pipe and a one-insert-per-event fold; peak RSS;
replay time."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from events.registry import REGISTRY
from events.topics import Topics, ensure_topics
from jobmeter.memory import tune_for_batches
from jobmeter.settings import Settings
from projections.db import create_pool, quote_schema
from projections.fold import Folder
from projections.ledger.projection import APPLY_JOBS, UsageLedger, job_rows
from projections.migrate import migrate
from projections.records import Record, Recorded, logged_at
from services.devtools.bench.rates import PeakRss, Rate
from services.devtools.bench.workload import check_job_messages, load_topic
from services.devtools.sandbox import sandbox

STALL_SECONDS = 60.0
# As the live consumers (services.platform.consumers): a fetch the broker holds open for partitions already
# drained blocks the next fetch to that broker; at aiokafka's default (500 ms) that stall alone cost about one run
# in three 0.4 s.
FETCH_MAX_WAIT_MS = 100


async def consume(
    settings: Settings, topic: str, expect: int, handle: Callable[[list[Record]], Awaitable[None]]
) -> Rate:
    """Read `topic` from offset zero with a plain consumer (no group), in batches as large as a live consumer
    takes (JOBMETER_BATCH_MAX_RECORDS) into `handle`; timed from the first fetch, so connecting to Kafka is not
    part of the figure."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await consumer.start()
    seen, last = 0, time.monotonic()
    started = time.perf_counter()
    try:
        while seen < expect:
            batches = await consumer.getmany(timeout_ms=500, max_records=settings.jobmeter_batch_max_records)
            records: list[Record] = [r for part in batches.values() for r in part][: expect - seen]
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

    async def fold(records: list[Record]) -> None:
        await folder.fold(records)

    return await consume(settings, topic, events, fold)


RAW_TABLE = """CREATE TABLE raw_jobs (api text, job_id text, account_id text, channel text, mode text,
                                      completed_at timestamptz, logged_at timestamptz, event_id uuid)"""
RAW_COLUMNS = ["api", "job_id", "account_id", "channel", "mode", "completed_at", "logged_at", "event_id"]


async def raw_pipe(settings: Settings, pool: asyncpg.Pool, topic: str, events: int) -> Rate:
    """The floor: the same rows straight from JSON into a plain table by COPY; no model, no dedupe, no positions."""
    async with pool.acquire() as conn:
        await conn.execute(RAW_TABLE)

    async def copy(records: list[Record]) -> None:
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

            async def one_by_one(records: list[Record]) -> None:
                for r in records:
                    envelope, event = REGISTRY.decode(r.value or b"")
                    item = Recorded(r.topic, r.partition, r.offset, logged_at(r.timestamp), envelope, event)
                    await conn.execute(APPLY_JOBS.sql, *job_rows([item]))  # outside a transaction: commits alone

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
    async with sandbox(settings) as s:
        apis = s.jobmeter_apis
        check_job_messages(apis)
        topics, replay_topics = Topics(s.jobmeter_topic_prefix), Topics(f"{s.jobmeter_topic_prefix}replay.")
        for t in (topics, replay_topics):
            await ensure_topics(s.kafka_bootstrap_servers, t, s.jobmeter_partitions)
        await load_topic(s, topics.jobs, events, apis)
        pool = await create_pool(s.database_url)
        tune_for_batches()  # as a consumer process does at start (services.engine.runtime); the same for all three runs
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
