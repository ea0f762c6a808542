"""The real local stack: started by `services.devtools.stack.up()`, probed with real clients.

The stack is left running at the end: other integration tests share it.
"""

from __future__ import annotations

import json
import time
import uuid

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import CliRunner

from services.cli import stack as stack_cli
from services.devtools import stack
from services.devtools.stack import StackError, manager

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return stack.up(quiet=True)


async def _roundtrip(bootstrap: str) -> None:
    topic = f"test-stack-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"hello", key=b"k1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    records = [record for records in batch.values() for record in records]
    assert [(r.key, r.value, r.offset) for r in records] == [(b"k1", b"hello", sent.offset)]


def test_every_service_runs(env: dict[str, str]) -> None:
    # All three started here, holding nothing of value: the connection file marks the stack as development.
    assert set(env) == {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "STRIPE_API_BASE", "JOBMETER_ENV"}
    assert env["JOBMETER_ENV"] == "development"
    rows = stack.status()
    assert {row.name: row.state for row in rows} == {
        "kafka": "running",
        "postgres": "running",
        "stripe-mock": "running",
    }
    assert all(row.pid for row in rows)


def test_up_again_is_fast_and_reuses_processes(env: dict[str, str]) -> None:
    before = {row.name: row.pid for row in stack.status()}
    started = time.monotonic()
    again = stack.up(quiet=True)
    elapsed = time.monotonic() - started
    assert again == env
    assert {row.name: row.pid for row in stack.status()} == before
    assert elapsed < 5, f"second up() took {elapsed:.1f}s"


def test_status_json_lists_every_server_with_its_role_address_and_pid(env: dict[str, str]) -> None:
    answer = CliRunner().invoke(stack_cli.app, ["status", "--json"])
    assert answer.exit_code == 0, answer.output
    listed = json.loads(answer.stdout)
    assert (listed["ok"], listed["brokers"]) == (True, 1)
    servers = {s["name"]: s for s in listed["servers"]}
    assert {name: (s["role"], s["state"], s["address"]) for name, s in servers.items()} == {
        "kafka": ("broker,controller", "running", env["KAFKA_BOOTSTRAP_SERVERS"]),
        "postgres": ("database", "running", env["DATABASE_URL"]),
        "stripe-mock": ("stripe api", "running", env["STRIPE_API_BASE"]),
    }
    assert {name: s["pid"] for name, s in servers.items()} == {row.name: row.pid for row in stack.status()}


def test_another_cluster_size_is_refused_while_the_single_broker_runs(env: dict[str, str]) -> None:
    # The quorum's voters are written into each node's storage: a size is changed only with the stack down.
    with pytest.raises(StackError, match="runs 1 Kafka broker .*jobmeter stack down"):
        stack.up(quiet=True, brokers=3)
    assert manager.saved_brokers() == 1
    assert stack.up(quiet=True) == env


async def test_kafka_topic_produce_consume(env: dict[str, str]) -> None:
    await _roundtrip(env["KAFKA_BOOTSTRAP_SERVERS"])


async def test_postgres_answers(env: dict[str, str]) -> None:
    conn = await asyncpg.connect(env["DATABASE_URL"])
    try:
        assert await conn.fetchval("SELECT current_database()") == "jobmeter"
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_stripe_mock_answers(env: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=env["STRIPE_API_BASE"], trust_env=False) as client:
        response = await client.get("/v1/customers", headers={"Authorization": "Bearer sk_test_123"})
    assert response.status_code == 200
    assert response.json()["object"] == "list"


async def test_kafka_restart_keeps_port_and_serves(env: dict[str, str]) -> None:
    old_pid = next(row.pid for row in stack.status() if row.name == "kafka")
    address = stack.restart("kafka")
    assert address == env["KAFKA_BOOTSTRAP_SERVERS"]
    new_pid = next(row.pid for row in stack.status() if row.name == "kafka")
    assert new_pid != old_pid
    await _roundtrip(address)


def test_an_external_server_keeps_the_stack_out_of_development(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same broker under another name counts as someone else's: it may be a real deployment's.
    port = env["KAFKA_BOOTSTRAP_SERVERS"].rpartition(":")[2]
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"localhost:{port}")
    try:
        with_external = stack.up(quiet=True)
        assert with_external["KAFKA_BOOTSTRAP_SERVERS"] == f"localhost:{port}"
        assert "JOBMETER_ENV" not in with_external
        assert "JOBMETER_ENV" not in manager.read_env_file()
    finally:
        monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
        assert stack.up(quiet=True) == env
