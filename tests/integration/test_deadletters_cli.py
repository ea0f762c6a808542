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


def job_envelope(job_id: str, account: str) -> bytes:
    return json.dumps({
        "event_id": "7b0c7a53-8f3e-4a43-9d0e-6c2a3f0b1e12", "type": "JobCompleted", "version": 1,
        "occurred_at": "2026-11-24T10:15:00Z", "producer": "hand",
        "data": {"account_id": account, "api": "extract", "job_id": job_id, "channel": "direct", "mode": "sync",
                 "completed_at": "2026-11-24T10:14:00Z"},
    }).encode()


async def test_a_redriven_letter_is_applied_once_after_the_fix_and_its_outcome_kept(settings: Settings) -> None:
    """A job the ledger could not apply (here a constraint standing for a bug) is dead-lettered; once the cause is
    gone, `redrive` applies it through the ledger, once however often it is redriven, and records the outcome
    beside the letter: `list` shows it and the doctor no longer counts it. A letter that still cannot be applied is
    refused again, with why (exit 1)."""
    jobs = Topics(settings.jobmeter_topic_prefix).jobs
    async with build_runtime(settings, ["ledger"]).running(producer="test") as runtime:
        async with runtime.res.pool.acquire() as conn:
            await conn.execute("ALTER TABLE ledger.jobs ADD CONSTRAINT stand_in_for_a_bug CHECK (account_id <> 'beta')")
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(jobs, job_envelope("j-beta", "beta"), key=b"beta")
            await producer.send_and_wait(jobs, NOT_JSON, key=b"beta")
            await applied_to_end(settings, "ledger", "jobs")
        finally:
            await producer.stop()
        async with runtime.res.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM ledger.jobs") == 0
            await conn.execute("ALTER TABLE ledger.jobs DROP CONSTRAINT stand_in_for_a_bug")  # the fix

        garbage, job = await listed(settings)
        assert "could not apply" in job["reason"] and job["redriven"] is None

        code, out, err = await jobmeter(settings, "deadletters", "redrive", "--all", "--json")
        assert code == 1, err  # the garbage is refused again
        outcomes = {row["id"]: (row["applied"], row["detail"]) for row in json.loads(out)}
        assert outcomes[job["id"]] == (True, "")
        assert outcomes[garbage["id"]][0] is False and "not an event envelope" in outcomes[garbage["id"]][1]

        code, out, err = await jobmeter(settings, "deadletters", "redrive", job["id"][:8])  # again, by id
        assert code == 0 and "applied" in out, err
        async with runtime.res.pool.acquire() as conn:
            assert await conn.fetch("SELECT job_id, account_id FROM ledger.jobs") == [("j-beta", "beta")]
            assert await conn.fetchval("SELECT sum(jobs) FROM ledger.hourly WHERE account_id = 'beta'") == 1

    after = {row["id"]: row["redriven"] for row in await listed(settings)}
    assert after[job["id"]] == "applied" and after[garbage["id"]].startswith("refused: not an event envelope")
    code, out, _ = await jobmeter(settings, "doctor", "--json")
    letters = [item for item in json.loads(out) if item["kind"] == "dead-letters"]
    assert [(item["subject"], item["detail"].split(";")[0]) for item in letters] == [("ledger", "1 dead letter(s)")]
    code, out, err = await jobmeter(settings, "deadletters", "redrive")
    assert code == 2 and "--all" in err
