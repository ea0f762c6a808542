"""Producers upgraded before consumers, on the real stack: a producer that is not ours (Debian's kcat, librdkafka)
writes a JobCompleted of a newer version between ordinary ones. The ledger holds that partition at it — nothing
after it is applied or lost, its position stays before it — folds the other partitions, and says so in /healthz
(503, naming the partition) and in /metrics. Nothing is dead-lettered. (A reader that knows the version taking
over and applying them all once is shown on the Folder itself, in test_fold.py.)"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from events.topics import Topics
from jobmeter.settings import Settings
from services.http.app import create_app
from tests.integration.helpers import client_for, eventually, fetchval, read_to_end

pytestmark = pytest.mark.integration


def envelope(job_id: str, *, version: int = 1) -> str:
    data: dict[str, Any] = {"account_id": "acme", "api": "extract", "job_id": job_id, "channel": "direct",
                            "mode": "sync", "completed_at": datetime(2026, 12, 1, tzinfo=UTC).isoformat()}
    if version > 1:
        data["priority"] = "high"  # what the newer version added
    return json.dumps({"event_id": str(uuid.uuid4()), "type": "JobCompleted", "version": version,
                       "occurred_at": "2026-12-01T00:00:00Z", "producer": "kcat", "data": data})


async def kcat(settings: Settings, topic: str, partition: int, lines: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(
        "kcat", "-P", "-b", settings.kafka_bootstrap_servers, "-t", topic, "-p", str(partition), "-K", "\t",
        "-X", "acks=all", stdin=asyncio.subprocess.PIPE,
    )
    await process.communicate("".join(f"acme\t{line}\n" for line in lines).encode())
    assert process.returncode == 0


@pytest.mark.skipif(shutil.which("kcat") is None, reason="needs Debian's kcat (.ci/run installs it)")
async def test_a_newer_version_from_kcat_holds_its_partition_and_the_others_go_on(settings: Settings) -> None:
    topic = Topics(settings.jobmeter_topic_prefix).name("jobs")
    async with client_for(create_app(settings, consumers=["ledger"])) as client:
        await kcat(settings, topic, 0, [envelope("p0-old"), envelope("p0-new", version=2), envelope("p0-after")])
        await kcat(settings, topic, 1, [envelope("p1-old"), envelope("p1-next")])

        async def ledger() -> list[str]:
            rows = await fetchval(settings, "SELECT coalesce(array_agg(job_id ORDER BY job_id), '{}') FROM ledger.jobs")
            return list(rows)

        assert await eventually(ledger, lambda seen: len(seen) >= 3) == ["p0-old", "p1-next", "p1-old"]
        health = await eventually(lambda: client.get("/healthz"), lambda r: r.status_code == 503)
        [held] = health.json()["held"]
        assert (held["consumer"], held["topic"], held["partition"], held["offset"]) == ("ledger", topic, 0, 1)
        assert "JobCompleted v2 is newer than this reader (v1)" in held["reason"]
        assert 'jobmeter_partitions_held{projection="ledger"} 1.0' in (await client.get("/metrics")).text

        # Held, not skipped: the consumer folds later records of the other partitions, and still not this one's.
        await kcat(settings, topic, 1, [envelope("p1-late")])
        assert await eventually(ledger, lambda seen: "p1-late" in seen) == ["p0-old", "p1-late", "p1-next", "p1-old"]
        stored = await fetchval(settings, "SELECT next_offset FROM ledger.positions WHERE topic = $1 AND partition = 0",
                                topic)
        assert stored == 1

        # The key index cannot hold a partition (it reads every key event itself): a key decision it cannot read
        # makes the process unhealthy until it is upgraded, rather than leave a key it may have suspended working.
        newer_hold = json.dumps({"event_id": str(uuid.uuid4()), "type": "KeySuspended", "version": 9,
                                 "occurred_at": "2026-12-01T00:00:00Z", "producer": "kcat",
                                 "data": {"account_id": "acme", "reason": "a reason from the future"}})
        await kcat(settings, Topics(settings.jobmeter_topic_prefix).name("keys"), 0, [newer_hold])
        told = await eventually(lambda: client.get("/healthz"), lambda r: "key index cannot read" in r.text)
        assert "KeySuspended v9 is newer than this reader" in told.json()["reason"]
    assert [r for r in await read_to_end(settings, "deadletters")] == []
