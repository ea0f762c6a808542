"""Static group membership (KIP-345, JOBMETER_INSTANCE_ID) against the real Kafka: two instances of one consumer
in one group; the second stops and starts again. With instance ids the group keeps the stopped member's
partitions for it and takes it back without a rebalance, so the other instance never notices; without, the same
restart rebalances the other instance twice (when it leaves, when it comes back).

The observable is our own rebalance listener: aiokafka calls every member's `on_partitions_revoked` and
`on_partitions_assigned` on each rebalance of the group, so "a" seeing neither means the group did not rebalance."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from events.topics import Topics
from jobmeter.settings import Settings
from projections.catalog import PROJECTIONS
from services.devtools.bench.restart import group_members
from services.engine.runtime import Runtime, build_runtime
from services.platform.consumers import SeekToStoredPositions
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

CONSUMER = "ledger"
Event = tuple[Any, str, frozenset[TopicPartition]]  # (the subscriber, "revoked" | "assigned", partitions)


@pytest.fixture
def rebalances(monkeypatch: pytest.MonkeyPatch) -> list[Event]:
    """Every call of every projection consumer's rebalance listener, in order, with the subscriber it belongs to."""
    seen: list[Event] = []

    def recording(name: str) -> Callable[[SeekToStoredPositions, set[TopicPartition]], Awaitable[None]]:
        original = getattr(SeekToStoredPositions, name)

        async def record(self: SeekToStoredPositions, partitions: set[TopicPartition]) -> None:
            await original(self, partitions)
            seen.append((self.subscriber, name.removeprefix("on_partitions_"), frozenset(partitions)))

        return record

    for name in ("on_partitions_revoked", "on_partitions_assigned"):
        monkeypatch.setattr(SeekToStoredPositions, name, recording(name))
    return seen


def subscriber_of(runtime: Runtime) -> Any:
    (subscriber,) = runtime.broker.subscribers
    return subscriber


def assignment(runtime: Runtime) -> frozenset[TopicPartition]:
    consumer = subscriber_of(runtime).consumer
    return frozenset(consumer.assignment()) if consumer is not None else frozenset()


def settled(runtime: Runtime, events: list[Event]) -> bool:
    """The consumer holds partitions and its listener has been told of exactly those (the callback ran)."""
    mine = [e for e in events if e[0] is subscriber_of(runtime) and e[1] == "assigned"]
    return bool(mine) and bool(assignment(runtime)) and mine[-1][2] == assignment(runtime)


@asynccontextmanager
async def instance(settings: Settings, instance_id: str | None) -> AsyncIterator[Runtime]:
    update = {"jobmeter_instance_id": instance_id}
    async with build_runtime(settings.model_copy(update=update), [CONSUMER]).running(producer="test") as runtime:
        yield runtime


async def partitions(settings: Settings) -> frozenset[TopicPartition]:
    topics = Topics(settings.jobmeter_topic_prefix)
    names = [topics.name(t) for t in PROJECTIONS[CONSUMER].topics]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return frozenset(TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"])


async def group(settings: Settings) -> tuple[str, int]:
    state, members = await group_members(settings)
    return state, len(members)


async def both_settled(a: Runtime, b: Runtime, events: list[Event], everything: frozenset[TopicPartition]) -> None:
    async def split() -> tuple[bool, bool, frozenset[TopicPartition], frozenset[TopicPartition]]:
        return settled(a, events), settled(b, events), assignment(a), assignment(b)

    await eventually(split, lambda s: s[0] and s[1] and not s[2] & s[3] and s[2] | s[3] == everything)


async def test_a_static_member_restarting_within_the_session_does_not_rebalance_the_group(
    settings: Settings, rebalances: list[Event]
) -> None:
    async with instance(settings, "a") as a:
        everything = await partitions(settings)  # the runtime created the topics
        async with instance(settings, "b") as b:
            await both_settled(a, b, rebalances, everything)
            held_by_a, held_by_b = assignment(a), assignment(b)
            assert await group(settings) == ("Stable", 2)
            seen_before = len(rebalances)
        # "b" is gone, yet the group still counts it (no LeaveGroup from a static member): its partitions wait
        # for it until the session timeout, which is the price of static membership.
        assert await group(settings) == ("Stable", 2)
        async with instance(settings, "b") as b:
            await both_settled(a, b, rebalances, everything)
            assert assignment(b) == held_by_b  # its own partitions back…
            assert assignment(a) == held_by_a
            # …and "a" was told of nothing: b's rejoin was answered from the stable group, no new generation.
            assert [e for e in rebalances[seen_before:] if e[0] is subscriber_of(a)] == []


async def test_without_instance_ids_the_same_restart_rebalances_the_group(
    settings: Settings, rebalances: list[Event]
) -> None:
    async with instance(settings, None) as a:
        everything = await partitions(settings)
        async with instance(settings, None) as b:
            await both_settled(a, b, rebalances, everything)
            seen_before = len(rebalances)
        # "b" left the group on its way out: "a" is handed everything.
        await eventually(lambda: _value(assignment(a)), lambda held: held == everything)
        async with instance(settings, None) as b:
            await both_settled(a, b, rebalances, everything)
            told_a = [kind for sub, kind, _ in rebalances[seen_before:] if sub is subscriber_of(a)]
            assert told_a == ["revoked", "assigned", "revoked", "assigned"]


async def _value(value: frozenset[TopicPartition]) -> frozenset[TopicPartition]:
    return value
