"""A three-node Kafka cluster (`jobmeter stack up --brokers 3`), started by this module in a state directory of its
own, beside the shared stack's Postgres (whose databases the sandboxes use) and never touching its Kafka.

What it shows: three KRaft nodes vote and serve, and the connection file gives clients every bootstrap address and
the replication a cluster of three calls for; jobmeter's topics then hold three copies with two in sync; and with
the engine's publisher (idempotent, acks=all) writing while the broker leading the job partitions is SIGKILLed and
started again, writes go on with that broker down, and the ledger fold, running throughout, ends holding every
acknowledged job exactly once; while the broker is down, the fold scales out to a second instance, which takes
partitions and folds them, and back in to one (the group, as the broker describes it, follows each step).

Cost: about a minute and a half on two cores (three JVMs starting, a broker's restart, a few thousand events, two
rebalances).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from events.jobs import JobCompleted
from events.publisher import Publisher
from events.topics import LOGICAL_TOPICS, Replication, Topics, ensure_topics
from jobmeter.settings import Settings
from projections.ledger import queries as ledger_queries
from projections.positions import Partition
from projections.replay.shadow import read_positions
from services.devtools.chaos.scaling import GroupChange, record_change, settled_group
from services.devtools.stack import manager
from services.engine.runtime import build_runtime
from tests.integration.helpers import eventually, stack_sandbox

pytestmark = pytest.mark.integration

BROKERS = 3
BATCH = 60
ACCOUNTS = 30  # keyed by account: this many reach every partition of three
PACE = 0.05  # seconds between batches: a steady stream, not a flood, so three JVMs and the fold share two cores
SETTLE = 30.0  # seconds for the ledger's group to settle after a scaling step, with a broker down


@pytest.fixture(scope="module")
def cluster(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`up(brokers=3)` in a state directory of this module's; the shared Postgres and stripe-mock are named in the
    environment, so the manager treats them as external and starts (and stops) only the three Kafka nodes."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JOBMETER_STATE_DIR", str(tmp_path_factory.mktemp("cluster")))
        env.setenv("DATABASE_URL", stack["DATABASE_URL"])
        env.setenv("STRIPE_API_BASE", stack["STRIPE_API_BASE"])
        env.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
        try:
            yield manager.up(quiet=True, brokers=BROKERS)
        finally:
            # The data goes with the folder: a crash is as good a stop as any, and quicker than three shutdowns.
            for name in (f"kafka-{n}" for n in range(1, BROKERS + 1)):
                manager.kill(name)
            manager.down(purge=True)


@pytest.fixture
async def settings(stack: dict[str, str], cluster: dict[str, str]) -> AsyncIterator[Settings]:
    """A sandbox on the cluster, replicated as the connection file says."""
    async with stack_sandbox({**stack, "KAFKA_BOOTSTRAP_SERVERS": cluster["KAFKA_BOOTSTRAP_SERVERS"]}) as sandbox:
        yield sandbox.model_copy(update={
            "jobmeter_replication_factor": int(cluster["JOBMETER_REPLICATION_FACTOR"]),
            "jobmeter_min_insync_replicas": int(cluster["JOBMETER_MIN_INSYNC_REPLICAS"]),
        })


async def _admin(settings: Settings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    return admin


def test_three_nodes_vote_and_serve_and_clients_are_told_every_address(cluster: dict[str, str]) -> None:
    rows = {row.name: row for row in manager.status()}
    nodes = [rows[f"kafka-{n}"] for n in range(1, BROKERS + 1)]
    assert [(row.state, row.role) for row in nodes] == [("running", "broker,controller")] * BROKERS
    assert len({row.pid for row in nodes}) == BROKERS and all(row.pid for row in nodes)
    assert cluster["KAFKA_BOOTSTRAP_SERVERS"].split(",") == [row.address for row in nodes]
    assert (cluster["JOBMETER_REPLICATION_FACTOR"], cluster["JOBMETER_MIN_INSYNC_REPLICAS"]) == ("3", "2")
    assert (rows["postgres"].state, rows["stripe-mock"].state) == ("external", "external")  # not ours: not started
    # `jobmeter stack status --json` says the same, a server per entry.
    listed = manager.status_json(list(rows.values()))
    assert listed["brokers"] == BROKERS and listed["ok"] is True
    assert [(s["name"], s["pid"]) for s in listed["servers"][:BROKERS]] == [(r.name, r.pid) for r in nodes]


async def test_topics_hold_three_copies_and_acks_all_means_two(settings: Settings) -> None:
    topics = Topics(settings.jobmeter_topic_prefix)
    report = await ensure_topics(
        settings.kafka_bootstrap_servers, topics, settings.jobmeter_partitions,
        replication_factor=settings.jobmeter_replication_factor, min_insync=settings.jobmeter_min_insync_replicas,
    )
    assert report.replication == Replication(3, 2) and report.warnings() == []
    admin = await _admin(settings)
    try:
        # The node asked may not know a topic created a moment ago through another: it answers it with no
        # partitions (seen once in CI) until the cluster's metadata reaches it.
        described = await eventually(lambda: admin.describe_topics(topics.all()),
                                     lambda found: all(t["partitions"] for t in found))

        async def jobs_configs() -> dict[str, str]:
            [configs] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topics.jobs, None)])
            [resource] = configs.resources
            return {entry[0]: entry[1] for entry in resource[4]}

        # Nor its configs: it answered them with none (seen once in CI, a KeyError here).
        found = await eventually(jobs_configs, lambda entries: "min.insync.replicas" in entries)
    finally:
        await admin.close()
    assert len(described) == len(LOGICAL_TOPICS)
    for topic in described:
        assert [sorted(p["replicas"]) for p in topic["partitions"]] == [[1, 2, 3]] * settings.jobmeter_partitions
    assert found["min.insync.replicas"] == "2"


@dataclass
class Producing:
    """What the publisher got acknowledged, and when, relative to the broker's kill and restart."""

    acknowledged: set[str] = field(default_factory=set)
    failed_sends: int = 0
    phase: str = "before"
    batches: dict[str, int] = field(default_factory=lambda: {"before": 0, "down": 0, "back": 0})


async def _publish_until(publisher: Publisher, run: str, stop: asyncio.Event, seen: Producing) -> None:
    """Batches of distinct jobs until `stop`; a batch Kafka refused is sent again whole, as an upstream API
    retries: its earlier copies may be on the log, and the fold must count each job once all the same."""
    serial = 0
    while not stop.is_set():
        jobs = [
            JobCompleted(account_id=f"acct-{i % ACCOUNTS}", api="extract", job_id=f"{run}-{serial}-{i}",
                         channel="direct", mode="sync", completed_at=datetime.now(UTC))
            for i in range(BATCH)
        ]
        phase = seen.phase
        while True:
            try:
                await publisher.publish_many(jobs)
                break
            except KafkaError:
                seen.failed_sends += 1
                if stop.is_set():
                    return
        seen.acknowledged.update(job.job_id for job in jobs)
        if phase == seen.phase:  # the whole batch fell within one phase
            seen.batches[phase] += 1
        serial += 1
        await asyncio.sleep(PACE)


async def _leader_of_jobs(settings: Settings) -> int:
    admin = await _admin(settings)
    try:
        [described] = await admin.describe_topics([Topics(settings.jobmeter_topic_prefix).jobs])
    finally:
        await admin.close()
    return next(int(p["leader"]) for p in described["partitions"] if p["partition"] == 0)


async def _ledger(settings: Settings) -> tuple[int, int]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await ledger_queries.job_count(conn), await ledger_queries.total_jobs(conn)
    finally:
        await conn.close()


async def _positions(settings: Settings) -> dict[Partition, int]:
    conn = await asyncpg.connect(settings.database_url_for("ledger"))
    try:
        return await read_positions(conn, "ledger")
    finally:
        await conn.close()


async def _scale_out_and_in(settings: Settings, seen: Producing, alone: str, since: float) -> list[GroupChange]:
    """A second ledger instance (a dynamic member, as chaos --brokers 3 scales it) joins under load, folds the
    partitions it is given, and stops; returns the group as it settled after each step."""
    async with build_runtime(settings, ["ledger"]).running(producer="test-2"):
        changes = [await record_change(settings, "ledger", 1, 2, since, SETTLE)]
        theirs = {p for member, held in changes[0].members.items() if member != alone for p in held}
        joined = await _positions(settings)
        batches = seen.batches["down"]
        await _acknowledged_more(seen, "down", batches + 3)  # every batch reaches every partition
        # The second instance folded what it holds: its partitions' positions (committed with the rows) moved.
        await eventually(lambda: _positions(settings), lambda now: all(now.get(p, 0) > joined.get(p, 0)
                                                                        for p in theirs), timeout=SETTLE)
    return [*changes, await record_change(settings, "ledger", 2, 1, since, SETTLE)]


async def _acknowledged_more(seen: Producing, phase: str, batches: int) -> None:
    await eventually(lambda: _value(seen.batches[phase]), lambda n: n >= batches, timeout=60)


async def _value(value: Any) -> Any:
    return value


async def test_a_killed_leader_loses_no_acknowledged_job_and_bills_none_twice(settings: Settings) -> None:
    run = uuid.uuid4().hex[:6]
    seen = Producing()
    stop = asyncio.Event()
    since = time.monotonic()
    async with build_runtime(settings, ["ledger"]).running(producer="test"):  # creates the topics, 3 copies each
        leader = await _leader_of_jobs(settings)
        settled, _, members = await settled_group(settings, "ledger", 1, SETTLE)
        assert settled is not None, members
        ((alone, everything),) = members.items()
        async with Publisher(settings.kafka_bootstrap_servers, producer="test",
                             topics=Topics(settings.jobmeter_topic_prefix)) as publisher:
            producing = asyncio.create_task(_publish_until(publisher, run, stop, seen))
            try:
                await _acknowledged_more(seen, "before", 5)
                await asyncio.to_thread(manager.kill, f"kafka-{leader}")  # SIGKILL by its pid; returns once gone
                seen.phase = "down"
                # Two copies remain of each partition: acks=all is still satisfied, so writes go on, partition 0's
                # included (every batch reaches every partition) once another node leads it.
                await _acknowledged_more(seen, "down", 5)
                assert await _leader_of_jobs(settings) != leader
                changes = await _scale_out_and_in(settings, seen, alone, since)
                await asyncio.to_thread(manager.restart, f"kafka-{leader}")
                seen.phase = "back"
                await _acknowledged_more(seen, "back", 5)
            finally:
                stop.set()
                await producing
        expected = len(seen.acknowledged)
        # Every acknowledged job counted once: none lost with the broker, none twice for a retried batch.
        assert await eventually(lambda: _ledger(settings), lambda counts: counts[0] >= expected, timeout=60) == (
            expected, expected)
    # The group followed the scaling: two members splitting every partition, then the first alone with them all.
    up, down = changes
    assert [(c.before, c.after, c.state, len(c.members)) for c in changes] == [
        (1, 2, "Stable", 2), (2, 1, "Stable", 1)], [c.as_json() for c in changes]
    assert all(c.followed for c in changes)
    assert alone in up.members and set().union(*up.members.values()) == everything
    assert sum(len(held) for held in up.members.values()) == len(everything)  # none held twice
    assert down.members == {alone: everything}
    rows = {row.name: row.state for row in manager.status()}
    assert rows[f"kafka-{leader}"] == "running"
