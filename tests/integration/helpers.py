"""Small waiting and reading helpers shared by integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI

from events.topics import Topics
from jobmeter.settings import Settings
from projections.db import quote_schema
from projections.log import LogReader, Offsets
from projections.records import Record
from services.devtools.sandbox import sandbox

T = TypeVar("T")

# The dev tokens every sandbox is configured with (jobmeter.settings defaults).
ADMIN = {"Authorization": "Bearer dev-admin-token"}
INGEST = {"Authorization": "Bearer dev-ingest-token"}


async def eventually(probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], timeout: float = 30) -> T:
    """Poll `probe` until `accept` holds; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    value = await probe()
    while not accept(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(0.1)
        value = await probe()
    return value


async def fetchval(settings: Settings, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def read_topic(settings: Settings, topic: str, *, expect: int, timeout: float = 20) -> list[Any]:
    """Read a topic from the start until `expect` records arrived (or time ran out)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None,
    )
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for items in batch.values():
                records.extend(items)
    finally:
        await consumer.stop()
    return records


async def read_to_end(settings: Settings, logical: str) -> list[Record]:
    """Every record of a topic (logical name) up to its end as of this call: no waiting for more. After a call
    that returns once Kafka has what it publishes (the ingest, a webhook, a sync job), this is all it published."""
    async with LogReader(settings.kafka_bootstrap_servers) as log:
        return [record async for batch in log.read_to_end([Topics(settings.jobmeter_topic_prefix).name(logical)])
                for record in batch]


async def applied_to_end(settings: Settings, schema: str, *logical: str, timeout: float = 30) -> Offsets:
    """Wait until the projection in `schema` has applied every record its topics (logical names) held when this was
    called; returns those ends. A projection moves its positions in the transaction that writes what a record
    caused (its rows, its outbox), so past this a test may assert that something did NOT happen."""
    topics = [Topics(settings.jobmeter_topic_prefix).name(name) for name in logical]
    async with LogReader(settings.kafka_bootstrap_servers) as log:
        ends = await log.high_watermarks(await log.partitions(topics))
    table = f"{quote_schema(schema)}.positions"

    async def positions() -> Offsets:
        conn = await asyncpg.connect(settings.database_url)
        try:
            rows = await conn.fetch(f"SELECT topic, partition, next_offset FROM {table}")
        finally:
            await conn.close()
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    await eventually(positions, lambda at: all(at.get(p, 0) >= end for p, end in ends.items()), timeout)
    return ends


@asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running (consumers included), and a client that talks to it in process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://jobmeter.test") as client:
            yield client


async def register(client: httpx.AsyncClient, account: str, model: str = "subscription") -> None:
    """Register `account` (Stripe customer `cus_<account>`) and check it was accepted."""
    created = await client.post("/v1/accounts", json={"account_id": account, "model": model,
                                                       "stripe_customer_id": f"cus_{account}"}, headers=ADMIN)
    assert created.status_code in (201, 202), created.text


def job(account: str, job_id: str, *, api: str = "extract", channel: str = "direct", mode: str = "sync",
        at: datetime | None = None) -> dict[str, str]:
    return {
        "account_id": account, "api": api, "job_id": job_id, "channel": channel, "mode": mode,
        "completed_at": (at or datetime.now(UTC)).isoformat(),
    }


def stack_sandbox(stack: dict[str, str]) -> AbstractAsyncContextManager[Settings]:
    """A slice of the local stack (its own database and topic prefix) with the tests' quick consumer settings:
    conftest's per-test `settings`, and fixtures that need one for a whole module."""
    base = Settings(
        kafka_bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        database_url=stack["DATABASE_URL"],
        stripe_api_base=stack["STRIPE_API_BASE"],
    )
    return sandbox(base, jobmeter_partitions=3, jobmeter_batch_timeout_ms=50)
