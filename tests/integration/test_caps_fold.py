"""The caps fold's counting on the real Postgres (no Kafka): whatever order jobs, their redeliveries (in one chunk or
across batches), an account's registration and its subscription's period grids come in, every job is counted once,
in the period its account's grid (at the end) puts it in, as its first publication says; and an account's standing
keeps the latest completion of its counted jobs (hypothesis)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from events.accounts import AccountRegistered
from events.caps import CapSet
from events.codec import encode
from events.envelope import Envelope, Event
from events.jobs import JobCompleted
from events.stripe import StripeEventReceived
from jobmeter.settings import Settings
from projections.caps import store
from projections.caps.projection import UsageCaps
from projections.caps.rules import period_of
from projections.db import create_pool, transaction
from projections.fold import Folder
from projections.migrate import migrate
from projections.records import RawRecord
from services.stripe_adapter.fixtures import build_event

pytestmark = pytest.mark.integration

BASE = datetime(2026, 1, 31, 12, tzinfo=UTC)  # a month end: periods either side of it
CAPPED = "a"  # a cap makes its standing (the latest time) kept; the other account is billed by a subscription
BILLED = "g"

jobs = st.builds(lambda account, api, n, hours: JobCompleted(
    account_id=account, api=api, job_id=f"j{n}", channel="direct", mode="sync",
    completed_at=BASE + timedelta(hours=hours)),
    st.sampled_from([CAPPED, BILLED]), st.sampled_from(["extract", "ocr"]), st.integers(0, 12),
    st.integers(-24 * 40, 24 * 40))  # few job ids: published again, within a chunk and across batches
grids = st.builds(lambda days: subscription(BASE + timedelta(days=days)), st.integers(-45, 45))
facts = st.lists(st.one_of(jobs, grids), max_size=40)


def subscription(created: datetime) -> StripeEventReceived:
    """A live subscription of BILLED's customer whose period started a day before `created`, for 30 days."""
    raw = build_event("customer.subscription.updated", "cus_g", status="active", created=int(created.timestamp()),
                      event_id=f"evt_{uuid.uuid4().hex}")
    return StripeEventReceived(stripe_event_id=raw["id"], type=raw["type"], created=created, customer_id="cus_g",
                               data_object=raw["data"]["object"])


def records(events: Sequence[Event]) -> list[RawRecord]:
    offsets: dict[str, itertools.count[int]] = {}
    out = []
    for event in events:
        offset = next(offsets.setdefault(event.topic, itertools.count()))
        out.append(RawRecord(event.topic, 0, offset, 1_700_000_000_000, None,
                             encode(Envelope.wrap(event, producer="test"))))
    return out


async def example(url: str, log: list[Event], cut: int) -> None:
    schema = f"caps_{uuid.uuid4().hex[:8]}"
    await migrate(url, schema, UsageCaps.migrations)
    pool = await create_pool(url)
    try:
        folder = Folder(UsageCaps(), pool, schema=schema, chunk=3)  # several applies a batch
        raw = records(log)
        for start in range(0, len(raw), cut):  # the batches a consumer might read
            await folder.fold(raw[start:start + cut])
        async with transaction(pool, schema) as conn:
            usage = {(r["account_id"], r["period_start"], r["api"]): r["jobs"] for r in await conn.fetch(
                "SELECT * FROM usage WHERE jobs <> 0")}
            grid = await store.grids_of(conn, [BILLED])
            latest = await conn.fetchval("SELECT latest_at FROM standing WHERE account_id = $1", CAPPED)
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await pool.close()
    first: dict[tuple[str, str], JobCompleted] = {}
    for event in log:
        if isinstance(event, JobCompleted):
            first.setdefault((event.api, event.job_id), event)
    expected = Counter((j.account_id, period_of(j.completed_at, grid.get(j.account_id)).start, j.api)
                       for j in first.values())
    assert usage == expected
    capped = [j.completed_at for j in first.values() if j.account_id == CAPPED]
    assert latest == max([BASE - timedelta(days=100), *capped])


async def test_every_job_counts_once_in_its_period_whatever_the_order(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    opening: list[Event] = [CapSet(account_id=CAPPED, jobs=1_000_000, set_at=BASE - timedelta(days=100))]

    @given(facts, st.integers(0, 40), st.lists(jobs, max_size=10), st.integers(1, 12))
    @hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(later: list[Event], registered_at: int, tail: list[Event], cut: int) -> None:
        # The account's registration names its customer at any point: before it, its jobs count on calendar months.
        # The tail's jobs come after every grid change: counted on the grid as they are folded, never recounted.
        registration = AccountRegistered(account_id=BILLED, model="subscription", stripe_customer_id="cus_g")
        log = [*opening, *later[:registered_at], registration, *later[registered_at:], *tail]
        asyncio.run_coroutine_threadsafe(example(settings.database_url, log, cut), loop).result(timeout=120)

    await asyncio.to_thread(check)


async def test_a_job_published_twice_in_one_chunk_counts_once_as_first_published(settings: Settings) -> None:
    early = BASE - timedelta(days=3)
    log: list[Event] = [
        CapSet(account_id=CAPPED, jobs=1_000_000, set_at=BASE - timedelta(days=100)),
        JobCompleted(account_id=CAPPED, api="ocr", job_id="twice", channel="direct", mode="sync", completed_at=early),
        JobCompleted(account_id=CAPPED, api="ocr", job_id="twice", channel="direct", mode="sync",
                     completed_at=BASE + timedelta(days=3)),  # a later period: not counted, nor the latest time
    ]
    await example(settings.database_url, log, cut=3)
