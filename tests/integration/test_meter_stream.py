"""The meter reporter over Stripe's v2 meter event stream (100 events a request), against a local fake of the two
v2 endpoints (stripe-mock has none), with real Postgres: batching, session renewal, 429s, a crash mid-way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta

import pytest

from events.accounts import AccountRegistered
from jobmeter.settings import Settings
from projections.meter.windows import window_start
from services.platform.rate_limit import TokenBucket
from services.stripe_adapter.client import MeterEvent, make_client
from services.stripe_adapter.meter_stream import StripeMeterEventStream
from tests.integration.fake_stripe_v2_meter_stream import FakeStripeV2MeterStream
from tests.integration.meter_harness import LEASE, WIDTH, Harness, jobs, open_harness

pytestmark = pytest.mark.integration


class ProcessDied(BaseException):
    """Stands for the process being killed."""


@pytest.fixture
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    async with open_harness(settings) as h:
        yield h


@pytest.fixture
def fake() -> Iterator[FakeStripeV2MeterStream]:
    with FakeStripeV2MeterStream() as running:
        yield running


def stream(h: Harness, fake: FakeStripeV2MeterStream) -> StripeMeterEventStream:
    client = make_client(h.settings, api_base=fake.url, meter_events_base=fake.url)
    return StripeMeterEventStream(client, TokenBucket(100), max_backoff=0.3)


async def customers(h: Harness, n: int) -> list[str]:
    accounts = [f"bulk{i:03d}" for i in range(n)]
    await h.publish(*(AccountRegistered(account_id=a, model="subscription", stripe_customer_id=f"cus_Bulk{i:03d}")
                      for i, a in enumerate(accounts)))
    return accounts


async def test_a_window_of_many_customers_goes_in_batches_of_100(harness: Harness,
                                                                  fake: FakeStripeV2MeterStream) -> None:
    h = harness
    at = h.now - timedelta(minutes=10)
    accounts = await customers(h, 150)
    await h.publish(*(job for i, a in enumerate(accounts) for job in jobs(1 + i % 3, at, account=a, prefix=a)))

    outcome = await h.sender(stream(h, fake)).send_due()
    assert outcome.sent == 150
    assert sorted(len(r) for r in fake.requests) == [50, 100]  # sent at once: either may arrive first
    assert len(fake.sessions) == 1  # one session for both requests
    start = window_start(at, WIDTH)
    first = fake.counted[f"cus_Bulk000-{int(start.timestamp())}-60s-0"]
    assert first["timestamp"] == start.isoformat().replace("+00:00", "Z")
    assert first["payload"] == {"stripe_customer_id": "cus_Bulk000", "value": "1"}
    assert sum(int(e["payload"]["value"]) for e in fake.counted.values()) == sum(1 + i % 3 for i in range(150))
    assert len(await h.emitted()) == 150


async def test_an_expired_session_is_renewed_and_429s_are_retried(harness: Harness,
                                                                  fake: FakeStripeV2MeterStream) -> None:
    h = harness
    sink = stream(h, fake)
    await h.publish(*jobs(2, h.now - timedelta(minutes=10)))
    assert (await h.sender(sink).send_due()).sent == 1

    fake.expire_all()
    fake.play(["429", "429"])
    await h.publish(*jobs(3, h.now - timedelta(minutes=5), prefix="k"))
    assert (await h.sender(sink).send_due()).sent == 1
    assert len(fake.sessions) == 2  # renewed once
    assert [sum(int(e["payload"]["value"]) for e in r) for r in fake.requests] == [2, 3]
    assert len(set(fake.keys)) == 2  # a fresh idempotency key for every request (a saved 500 is never replayed)


async def test_a_crash_after_the_stream_took_a_batch_resends_the_same_identifiers(
    harness: Harness, fake: FakeStripeV2MeterStream
) -> None:
    h = harness
    accounts = await customers(h, 3)
    await h.publish(*(job for a in accounts for job in jobs(2, h.now - timedelta(minutes=10), account=a, prefix=a)))
    real = stream(h, fake)

    class DiesAfterSending:
        batch_size = 100

        async def send(self, event: MeterEvent) -> None:
            await self.send_batch([event])

        async def send_batch(self, events: Sequence[MeterEvent]) -> None:
            await real.send_batch(events)
            raise ProcessDied

    with pytest.raises(ProcessDied):
        await h.sender(DiesAfterSending()).send_due()
    assert (await h.sender(stream(h, fake), at=h.now + LEASE + timedelta(seconds=1)).send_due()).sent == 3

    first, again = fake.requests
    assert [e["identifier"] for e in first] == [e["identifier"] for e in again]
    assert fake.keys[0] != fake.keys[1]  # a new key; the identifiers keep each event counted once
    assert sum(int(e["payload"]["value"]) for e in fake.counted.values()) == 6  # Stripe counts each once
