"""`jobmeter deadletters list | show` against the real stack: unreadable records put on the job log by hand are
dead-lettered by the ledger consumer, then read back by the command (a real `jobmeter` child in this sandbox)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from events.topics import Topics
from jobmeter.settings import Settings
from services.devtools.sandbox import service_env
from services.engine.runtime import build_runtime
from tests.integration.helpers import applied_to_end, read_to_end

pytestmark = pytest.mark.integration

JOBMETER = str(Path(sys.executable).parent / "jobmeter")
NOT_JSON = b'{"event_id": "truncated'
NOT_A_JOB = json.dumps({
    "event_id": "7b0c7a53-8f3e-4a43-9d0e-6c2a3f0b1e11", "type": "JobCompleted", "version": 1,
    "occurred_at": "2026-11-24T10:15:00Z", "producer": "hand", "data": {"account_id": "acme", "api": "extract"},
}).encode()


async def jobmeter(settings: Settings, *args: str) -> tuple[int, str, str]:
    child = await asyncio.create_subprocess_exec(
        JOBMETER, *args, env=service_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


async def listed(settings: Settings, *args: str) -> list[dict[str, Any]]:
    code, out, err = await jobmeter(settings, "deadletters", "list", "--json", *args)
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


async def test_dead_letters_are_listed_newest_first_and_shown_with_their_payload(settings: Settings) -> None:
    jobs = Topics(settings.jobmeter_topic_prefix).jobs
    async with build_runtime(settings, ["ledger"]).running(producer="test"):
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
        await producer.start()
        try:
            first = await producer.send_and_wait(jobs, NOT_JSON, key=b"acme")
            await applied_to_end(settings, "ledger", "jobs")  # dead-lettered before the position moved
            second = await producer.send_and_wait(jobs, NOT_A_JOB, key=b"acme")
            await applied_to_end(settings, "ledger", "jobs")
        finally:
            await producer.stop()
    assert len(await read_to_end(settings, "deadletters")) == 2

    newest, oldest = await listed(settings)
    assert (newest["consumer"], newest["source"], newest["partition"], newest["offset"]) == (
        "ledger", jobs, second.partition, second.offset)
    assert (oldest["consumer"], oldest["source"], oldest["partition"], oldest["offset"]) == (
        "ledger", jobs, first.partition, first.offset)
    assert newest["reason"].startswith("invalid JobCompleted") and "job_id" in newest["reason"]
    assert oldest["reason"].startswith("not an event envelope")
    assert newest["at"] >= oldest["at"]
    assert "payload" not in newest

    assert [row["id"] for row in await listed(settings, "--limit", "1")] == [newest["id"]]
    assert [row["id"] for row in await listed(settings, "--consumer", "ledger")] == [newest["id"], oldest["id"]]
    assert await listed(settings, "--consumer", "meter") == []

    code, out, err = await jobmeter(settings, "deadletters", "show", oldest["id"], "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["payload"] == NOT_JSON.decode() and shown["key"] == "acme"
    assert {k: v for k, v in shown.items() if k not in ("payload", "key")} == oldest

    code, out, err = await jobmeter(settings, "deadletters", "show", newest["id"][:8])  # the start of an id is enough
    assert code == 0, err
    assert NOT_A_JOB.decode() in out and newest["reason"][:30] in out

    code, _, err = await jobmeter(settings, "deadletters", "show", "00000000-0000-0000-0000-000000000000")
    assert code == 1 and "no dead letter" in err
