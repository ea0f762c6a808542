"""`JobsCompleted` on the real stack: a record of one account's jobs is read as its jobs, each as if it had come in a
`JobCompleted` of its own. Records are written by a producer that is not ours (Debian's kcat), so what is shown is
the wire contract: every job counts once in the ledger and in the consumers that bill it, whatever carried it; a
batch naming another account is dead-lettered whole; the ingest publishes one record per account; and a job a
projection cannot apply is dead-lettered alone, as a lone `JobCompleted` a redrive applies once."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from events.deadletters import DeadLettered
from events.jobs import JobCompleted, JobsCompleted, job_event_id
from events.registry import REGISTRY
from events.topics import Topics, ensure_topics
from jobmeter.settings import Settings
from projections.records import RawRecord
from services.engine.runtime import build_runtime
from services.http.app import create_app
from tests.integration.cli import run_cli
from tests.integration.helpers import (
    INGEST,
    applied_to_end,
    client_for,
    fetchval,
    job,
    read_to_end,
    register,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kcat") is None, reason="needs Debian's kcat (.ci/run installs it)"),
]

BILLING = ["accounts", "ledger", "payg", "meter", "caps", "rapidapi"]
Job = dict[str, str]


def envelope(event_type: str, data: Mapping[str, Any], event_id: uuid.UUID | None = None) -> str:
    return json.dumps({"event_id": str(event_id or uuid.uuid4()), "type": event_type, "version": 1,
                       "occurred_at": "2026-12-01T00:00:00Z", "producer": "kcat", "data": data})


def alone(one: Job) -> str:
    return envelope("JobCompleted", one)


def batch(account: str, *jobs: Job) -> str:
    return envelope("JobsCompleted", {"account_id": account, "jobs": list(jobs)})


async def kcat(settings: Settings, lines: list[tuple[str, str]]) -> None:
    """(key, value) records onto partition 0 of the jobs topic, in order, acknowledged by every replica."""
    topics = Topics(settings.jobmeter_topic_prefix)
    await ensure_topics(settings.kafka_bootstrap_servers, topics, settings.jobmeter_partitions)
    process = await asyncio.create_subprocess_exec(
        "kcat", "-P", "-b", settings.kafka_bootstrap_servers, "-t", topics.jobs, "-p", "0", "-K", "\t",
        "-X", "acks=all", stdin=asyncio.subprocess.PIPE,
    )
    await process.communicate("".join(f"{key}\t{value}\n" for key, value in lines).encode())
    assert process.returncode == 0


async def counted(settings: Settings) -> dict[str, Any]:
    """What each consumer that bills jobs has counted, once every consumer has read the whole log."""
    for schema in ("ledger", "rapidapi"):
        await applied_to_end(settings, schema, "jobs")
    for schema in ("payg", "meter", "caps"):
        await applied_to_end(settings, schema, "accounts", "jobs")
    queries = {
        "ledger": "SELECT count(*) FROM ledger.jobs",
        "hourly": "SELECT coalesce(sum(jobs), 0) FROM ledger.hourly",
        "payg": "SELECT coalesce(sum(amount_minor), 0) FROM payg.movements WHERE kind = 'debit'",
        "debits": "SELECT count(*) FROM payg.movements WHERE kind = 'debit'",
        "meter": "SELECT count(*) FROM meter.jobs_seen",
        "caps": "SELECT count(*) FROM caps.seen",
        "usage": "SELECT coalesce(sum(jobs), 0) FROM caps.usage",
        "rapidapi": "SELECT count(*) FROM rapidapi.ledger_jobs",
    }
    return {name: await fetchval(settings, sql) for name, sql in queries.items()}


async def registered(settings: Settings) -> None:
    """A PAYG account and a subscription account with a Stripe customer, as the consumers see them."""
    async with client_for(create_app(settings, consumers=["accounts"])) as client:
        await register(client, "paid", model="payg")
        await register(client, "subs")


async def test_a_batch_from_kcat_counts_each_job_once_in_every_consumer_that_bills_it(settings: Settings) -> None:
    await registered(settings)
    paid = [job("paid", "p-1"), job("paid", "p-2", api="classify"), job("paid", "p-3", api="translate"),
            job("paid", "p-r", channel="rapidapi")]  # RapidAPI bills its own: the channel counts it, PAYG not
    subs = [job("subs", "s-1"), job("subs", "s-2", api="summarize", mode="async")]
    async with build_runtime(settings, BILLING).running(producer="test"):
        await kcat(settings, [("paid", batch("paid", *paid)), ("subs", batch("subs", *subs))])
        seen = await counted(settings)
    assert seen == {"ledger": 6, "hourly": 6, "payg": -(5 + 3 + 4), "debits": 3, "meter": 2, "caps": 6,
                    "usage": 6, "rapidapi": 1}


async def test_a_job_alone_and_again_in_a_batch_counts_once_and_keeps_one_id(settings: Settings) -> None:
    await registered(settings)
    first, later = job("paid", "a-1"), job("paid", "a-2", api="classify")
    sub_first, sub_later = job("subs", "b-1"), job("subs", "b-2")
    first_id, sub_first_id = uuid.uuid4(), uuid.uuid4()  # a producer's own ids, as kcat's user chose them
    async with build_runtime(settings, BILLING).running(producer="test"):
        await kcat(settings, [
            ("paid", envelope("JobCompleted", first, first_id)), ("subs", envelope("JobCompleted", sub_first,
                                                                                   sub_first_id)),
            ("paid", batch("paid", first, later)), ("subs", batch("subs", sub_first, sub_later)),
            ("paid", alone(later)), ("subs", alone(sub_later)),  # and alone again, after the batch
        ])
        seen = await counted(settings)
    assert seen == {"ledger": 4, "hourly": 4, "payg": -(5 + 3), "debits": 2, "meter": 2, "caps": 4, "usage": 4,
                    "rapidapi": 0}
    ids = await fetchval(settings, "SELECT json_object_agg(job_id, event_id) FROM ledger.jobs")
    assert json.loads(ids) == {"a-1": str(first_id), "a-2": str(job_event_id("classify", "a-2")),
                               "b-1": str(sub_first_id), "b-2": str(job_event_id("extract", "b-2"))}


async def test_a_batch_naming_another_account_is_dead_lettered_whole_and_the_partition_goes_on(
    settings: Settings,
) -> None:
    stray = batch("acme", job("acme", "x-1"), job("globex", "x-2"), job("acme", "x-3"))
    async with build_runtime(settings, ["ledger"]).running(producer="test"):
        await kcat(settings, [("acme", stray), ("acme", batch("acme", job("acme", "after-1"))),
                              ("acme", alone(job("acme", "after-2")))])
        await applied_to_end(settings, "ledger", "jobs")
    letters = [REGISTRY.decode(r.value or b"")[1] for r in await read_to_end(settings, "deadletters")]
    [letter] = [d for d in letters if isinstance(d, DeadLettered) and d.consumer == "ledger"]
    assert (letter.partition, letter.offset, letter.payload) == (0, 0, stray)
    assert "jobs.1.account_id" in letter.reason and "globex" in letter.reason, letter.reason
    rows = await fetchval(settings, "SELECT array_agg(job_id ORDER BY job_id) FROM ledger.jobs")
    assert rows == ["after-1", "after-2"]
    assert await fetchval(settings, "SELECT sum(jobs) FROM ledger.hourly") == 2


async def test_the_ingest_publishes_one_record_per_account_and_the_export_one_row_per_job(settings: Settings) -> None:
    sent = [job("acme", "i-1"), job("globex", "i-2", api="classify"), job("acme", "i-3", channel="rapidapi"),
            job("initech", "i-4"), job("globex", "i-5")]
    async with client_for(create_app(settings, consumers=[])) as client:
        response = await client.post("/v1/jobs/completed", json=sent, headers=INGEST)
        assert response.status_code == 202 and response.json()["accepted"] == 5, response.text
    records = await read_to_end(settings, "jobs")
    decoded = {(r.key or b"").decode(): REGISTRY.decode(r.value or b"")[1] for r in records}
    assert len(records) == len(decoded) == 3
    assert all(isinstance(e, JobsCompleted) for e in decoded.values()), decoded
    grouped = {key: [j.job_id for j in e.jobs] for key, e in decoded.items() if isinstance(e, JobsCompleted)}
    assert grouped == {"acme": ["i-1", "i-3"], "globex": ["i-2", "i-5"], "initech": ["i-4"]}

    export = await run_cli(settings, "export", "jobs")
    assert export.exit_code == 0, export.output
    rows = [json.loads(line) for line in export.stdout.splitlines()]
    assert sorted((r["event_id"], r["account_id"], r["api"], r["job_id"], r["channel"]) for r in rows) == sorted(
        (str(job_event_id(j["api"], j["job_id"])), j["account_id"], j["api"], j["job_id"], j["channel"]) for j in sent
    )


async def test_a_job_a_projection_cannot_apply_is_dead_lettered_alone_and_redriven_once(settings: Settings) -> None:
    good, bad, also = job("acme", "g-1"), job("acme", "bad-1", api="classify"), job("acme", "g-2")
    async with build_runtime(settings, ["ledger"]).running(producer="test") as runtime:
        async with runtime.res.pool.acquire() as conn:
            await conn.execute("ALTER TABLE ledger.jobs ADD CONSTRAINT stand_in_for_a_bug CHECK (job_id <> 'bad-1')")
        await kcat(settings, [("acme", batch("acme", good, bad, also))])
        await applied_to_end(settings, "ledger", "jobs")
        assert await fetchval(settings, "SELECT array_agg(job_id ORDER BY job_id) FROM ledger.jobs") == ["g-1", "g-2"]
        async with runtime.res.pool.acquire() as conn:
            await conn.execute("ALTER TABLE ledger.jobs DROP CONSTRAINT stand_in_for_a_bug")  # the fix

        [record] = await read_to_end(settings, "deadletters")
        letter = REGISTRY.decode(record.value or b"")[1]
        assert isinstance(letter, DeadLettered) and "could not apply" in letter.reason, letter
        envelope_, event = REGISTRY.decode(letter.payload.encode())
        assert (envelope_.type, envelope_.event_id) == ("JobCompleted", job_event_id("classify", "bad-1"))
        assert isinstance(event, JobCompleted) and event.job_id == "bad-1"

        for _ in range(2):  # redriven twice: applied once
            redriven = await run_cli(settings, "deadletters", "redrive", "--all")
            assert redriven.exit_code == 0, redriven.output
        rows = await fetchval(settings, "SELECT array_agg(job_id ORDER BY job_id) FROM ledger.jobs")
        assert rows == ["bad-1", "g-1", "g-2"]
        assert await fetchval(settings, "SELECT sum(jobs) FROM ledger.hourly") == 3
        assert await fetchval(settings, "SELECT event_id FROM ledger.jobs WHERE job_id = 'bad-1'") == (
            job_event_id("classify", "bad-1"))


async def test_a_whole_batch_applied_again_applies_every_job_of_it(settings: Settings) -> None:
    """What a redrive of a whole record does (`Folder.reapply`): a batch refused whole and read again after an
    upgrade is every job of it, not the first."""
    value = batch("acme", job("acme", "w-1"), job("acme", "w-2", api="classify")).encode()
    async with build_runtime(settings, ["ledger"]).running(producer="test") as runtime:
        assert await runtime.folder("ledger").reapply(RawRecord("jobs", 0, 0, 0, b"acme", value)) is None
    assert await fetchval(settings, "SELECT array_agg(job_id ORDER BY job_id) FROM ledger.jobs") == ["w-1", "w-2"]
    assert await fetchval(settings, "SELECT sum(jobs) FROM ledger.hourly") == 2
