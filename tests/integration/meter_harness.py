"""Drives the meter reporter step by step against real Postgres, with stripe-mock behind `FakeMeterStripeFront`.

Events are folded by the same Folder the consumers use (same transaction, same positions), without Kafka in
between, so a test can stop between any two steps; the sender runs on a clock the test sets.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from events.accounts import AccountRegistered
from events.codec import encode
from events.envelope import Envelope, Event
from events.jobs import JobCompleted
from events.registry import REGISTRY
from jobmeter.settings import Settings
from projections.accounts.projection import AccountRegistry
from projections.db import transaction
from projections.fold import Folder
from projections.ledger.projection import UsageLedger
from projections.meter.projection import MeterReporter
from projections.meter.reports import Report, reports_of_account
from projections.migrate import migrate
from projections.projection import Projection
from projections.records import RawRecord
from services.meter.sender import MeterSender
from services.platform.rate_limit import TokenBucket
from services.stripe_adapter.client import StripeMeterEvents, make_client
from tests.integration.fake_meter_stripe_front import FakeMeterStripeFront

CUSTOMER = "cus_MeterTest1"
WIDTH = 60
LEASE = timedelta(minutes=5)


def projections() -> list[Projection]:
    return [AccountRegistry(), UsageLedger(), MeterReporter(window_seconds=WIDTH)]


@dataclass
class Harness:
    settings: Settings
    pool: asyncpg.Pool
    front: FakeMeterStripeFront
    offsets: Iterator[int] = field(default_factory=itertools.count)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def folder(self, projection: Any) -> Folder:
        async def no_dead_letters(letters: Any) -> None:
            raise AssertionError(f"unexpected dead letters: {letters}")

        return Folder(projection, self.pool, dead_letters=no_dead_letters)

    async def publish(self, *events: Event) -> None:
        """Fold events as the consumers would (same Folder, same transaction), without Kafka in between."""
        for projection in projections():
            records = [
                RawRecord(e.topic, 0, next(self.offsets), int(self.now.timestamp() * 1000), e.partition_key().encode(),
                          encode(Envelope.wrap(e, producer="test")))
                for e in events if e.topic in projection.topics
            ]
            await self.folder(projection).fold(records)

    def sink(self, *, attempts: int = 6) -> StripeMeterEvents:
        client = make_client(self.settings, api_base=self.front.url)
        return StripeMeterEvents(client, TokenBucket(100), attempts=attempts, max_backoff=0.3)

    def sender(self, sink: Any = None, *, at: datetime | None = None) -> MeterSender:
        clock_at = at or self.now
        return MeterSender(self.pool, sink or self.sink(), event_name="jobmeter_jobs", lateness_seconds=5,
                           lease=LEASE, retry_after=timedelta(seconds=30), clock=lambda: clock_at)

    async def reports(self, account: str = "acme") -> list[Report]:
        async with transaction(self.pool, "meter") as conn:
            return await reports_of_account(conn, account)

    async def emitted(self) -> list[Any]:
        rows = await self.pool.fetch("SELECT envelope FROM meter.outbox ORDER BY id")
        return [REGISTRY.decode(r["envelope"].encode())[1] for r in rows]


@asynccontextmanager
async def open_harness(settings: Settings) -> AsyncIterator[Harness]:
    settings = settings.model_copy(update={"jobmeter_stripe_timeout_seconds": 1.0})
    for projection in projections():
        await migrate(settings.database_url, projection.schema, projection.migrations)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    assert pool is not None
    try:
        with FakeMeterStripeFront(settings.stripe_api_base, slow_seconds=1.5) as front:
            h = Harness(settings, pool, front)
            await h.publish(AccountRegistered(account_id="acme", model="subscription", stripe_customer_id=CUSTOMER))
            yield h
    finally:
        await pool.close()


def jobs(n: int, at: datetime, *, account: str = "acme", prefix: str = "j", channel: str = "direct") -> list[Event]:
    return [
        JobCompleted(account_id=account, api="extract", job_id=f"{prefix}-{i}", channel=channel, mode="sync",
                     completed_at=at)
        for i in range(n)
    ]
