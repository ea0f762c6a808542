"""Small waiting and reading helpers shared by integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI

from jobmeter.settings import Settings

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
