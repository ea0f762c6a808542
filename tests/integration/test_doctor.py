"""`jobmeter doctor` against the real stack (a real `jobmeter` child in this sandbox): nothing listed and exit 0 on a
healthy sandbox; then jobs parked for an unregistered account, dead letters and under-replicated topics, each made
through the real path (consumers folding what was published), are listed with the command that resolves them, and
running that command for the parked jobs makes them go away."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from events.jobs import JobCompleted
from events.topics import LOGICAL_TOPICS, Topics
from jobmeter.settings import Settings
from services.devtools.sandbox import service_env
from services.engine.runtime import build_runtime
from services.http.app import create_app
from tests.integration.helpers import applied_to_end

pytestmark = pytest.mark.integration

JOBMETER = str(Path(sys.executable).parent / "jobmeter")
CONSUMERS = ["accounts", "ledger", "payg", "meter"]
ADMIN_TOKEN = "dev-admin-token"  # the development default every sandbox has


async def jobmeter(settings: Settings, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    child = await asyncio.create_subprocess_exec(
        JOBMETER, *args, env={**service_env(settings), **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


async def doctor(settings: Settings, env: dict[str, str] | None = None) -> tuple[int, list[dict[str, Any]]]:
    code, out, err = await jobmeter(settings, "doctor", "--json", env=env)
    assert code in (0, 1), err
    items: list[dict[str, Any]] = json.loads(out)
    return code, items


def job(account: str, job_id: str, completed_at: datetime) -> JobCompleted:
    return JobCompleted(account_id=account, api="extract", job_id=job_id, channel="direct", mode="sync",
                        completed_at=completed_at)


def by_kind(items: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["kind"], i["subject"]): i for i in items}


async def test_a_healthy_sandbox_needs_nothing(settings: Settings) -> None:
    async with build_runtime(settings, CONSUMERS).running(producer="test"):
        pass  # the consumers' schemas and the topics exist, as in a deployment
    assert await doctor(settings) == (0, [])
    code, out, _ = await jobmeter(settings, "doctor")
    assert code == 0 and "nothing to show" in out


async def test_what_is_stuck_is_listed_with_its_command_until_that_command_is_run(settings: Settings) -> None:
    now = datetime.now(UTC)
    async with build_runtime(settings, CONSUMERS).running(producer="test") as runtime:
        await runtime.res.publisher.publish_many([
            job("ghost", "g1", now - timedelta(days=2)), job("ghost", "g2", now - timedelta(days=1, hours=1)),
            job("fresh", "f1", now - timedelta(hours=1)),  # parked too, but not past a day
        ])
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(Topics(settings.jobmeter_topic_prefix).jobs, b"not json", key=b"ghost")
        finally:
            await producer.stop()
        for schema in ("ledger", "payg", "meter"):  # each dead-letters the garbage before its position moves
            await applied_to_end(settings, schema, "jobs")

        code, items = await doctor(settings)
        assert code == 1
        found = by_kind(items)
        payg = found[("payg-parked-jobs", "ghost")]
        assert payg["resolve"] == "jobmeter accounts create ghost --model payg"
        assert payg["detail"].startswith("2 job(s)") and payg["age_seconds"] >= timedelta(days=2).total_seconds()
        assert found[("meter-parked-jobs", "ghost")]["resolve"].startswith(
            "jobmeter accounts create ghost --model subscription")
        for consumer in ("ledger", "payg", "meter"):
            letters = found[("dead-letters", consumer)]
            assert letters["resolve"] == f"jobmeter deadletters list --consumer {consumer}"
            assert letters["detail"].startswith("1 dead letter(s)")
        assert not [i for i in items if i["subject"] == "fresh"]
        assert len(items) == 5, items

        code, table, _ = await jobmeter(settings, "doctor")
        assert code == 1 and "payg-parked-jobs" in table and "deadletters list" in table

        code, _, err = await jobmeter(settings, "accounts", "create", "ghost", "--model", "payg")
        assert code == 0, err
        await applied_to_end(settings, "payg", "accounts")
        await applied_to_end(settings, "meter", "accounts")
        code, items = await doctor(settings)
    assert code == 1
    assert sorted(i["kind"] for i in items) == ["dead-letters"] * 3  # released: debited, and dropped by the meter


async def test_topics_below_the_replication_factor_are_listed(settings: Settings) -> None:
    async with build_runtime(settings, []).running(producer="test"):
        pass  # creates the sandbox's topics: one copy each on the local broker
    code, items = await doctor(settings, env={"JOBMETER_REPLICATION_FACTOR": "2"})
    assert code == 1
    prefix = settings.jobmeter_topic_prefix
    assert sorted(i["subject"] for i in items) == sorted(f"{prefix}{name}" for name in LOGICAL_TOPICS.values())
    assert {i["kind"] for i in items} == {"topic-under-replicated"}
    assert all("below the replication factor 2" in i["detail"] and "kafka-reassign-partitions.sh" in i["resolve"]
               for i in items)


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app in a real uvicorn on a free port, lifespan (consumers, pool) included; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # uvicorn only exposes a flag
        if task.done():
            await task  # raises why it could not start
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_the_console_attention_page_shows_the_same_list(settings: Settings) -> None:
    async with build_runtime(settings, []).running(producer="test"):
        pass  # the topics, one copy each
    asking_two = settings.model_copy(update={"jobmeter_replication_factor": 2})
    async with served(create_app(asking_two)) as base, httpx.AsyncClient(base_url=base) as client:
        login = await client.post("/console/login", data={"token": ADMIN_TOKEN}, headers={"Origin": base})
        assert login.status_code == 303, login.text
        page = await client.get("/console/attention")
    assert page.status_code == 200
    assert 'href="/console/attention"' in page.text
    jobs = f"{settings.jobmeter_topic_prefix}jobs.completed"
    assert page.text.count("topic-under-replicated") == len(LOGICAL_TOPICS) and jobs in page.text
    assert "kafka-reassign-partitions.sh" in page.text and "Nothing needs attention" not in page.text
