"""`jobmeter export jobs` against real Kafka: every format reads back to exactly the jobs logged in the window."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from events.accounts import AccountRegistered
from events.codec import encode
from events.jobs import JobCompleted
from events.publisher import Publisher
from events.topics import Topics, ensure_topics
from jobmeter.settings import Settings, get_settings
from services.cli.main import app
from tests.integration.helpers import read_topic

pytestmark = pytest.mark.integration

T0 = datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))
Key = tuple[str, str, str, str, str, str, str]


def make_jobs(tag: str, n: int) -> list[JobCompleted]:
    return [
        JobCompleted.model_validate({
            "account_id": f"acct-{i % 4}", "api": ("extract", "translate")[i % 2], "job_id": f"{tag}-{i}",
            "channel": ("direct", "rapidapi")[i % 3 == 0], "mode": ("sync", "async")[i % 2],
            # one clock in +02:00: the export writes UTC whatever zone the producer used
            "completed_at": (T0 + timedelta(minutes=41 * i)).astimezone(PLUS_TWO if i % 2 else UTC),
        })
        for i in range(n)
    ]


Published = tuple[uuid.UUID, JobCompleted]


async def publish(publisher: Publisher, jobs: list[JobCompleted]) -> list[Published]:
    return list(zip(await publisher.publish_many(jobs), jobs, strict=True))


def key(published: Published) -> Key:
    event_id, job = published
    at = job.completed_at.astimezone(UTC).isoformat()
    return (str(event_id), job.account_id, job.api, job.job_id, job.channel, job.mode, at)


def row_key(row: dict[str, str]) -> Key:
    return (row["event_id"], row["account_id"], row["api"], row["job_id"], row["channel"], row["mode"],
            row["completed_at"])


def ordered(rows: list[dict[str, str]]) -> list[tuple[str, ...]]:
    return sorted(tuple(r.values()) for r in rows)


async def export(settings: Settings, *args: str) -> Result:
    """The CLI in a thread (it runs its own event loop), pointed at this test's topics."""
    get_settings.cache_clear()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "JOBMETER_TOPIC_PREFIX": settings.jobmeter_topic_prefix,
    }
    try:
        return await asyncio.to_thread(CliRunner().invoke, app, ["export", "jobs", *args], env=env)
    finally:
        get_settings.cache_clear()


async def test_each_format_reads_back_exactly_the_window(settings: Settings, tmp_path: Path) -> None:
    topics = Topics(settings.jobmeter_topic_prefix)
    await ensure_topics(settings.kafka_bootstrap_servers, topics, settings.jobmeter_partitions)
    async with Publisher(settings.kafka_bootstrap_servers, producer="test", topics=topics) as publisher:
        before = await publish(publisher, make_jobs("before", 5))
        await asyncio.sleep(0.3)
        since = datetime.now(UTC)
        await asyncio.sleep(0.3)
        inside = await publish(publisher, make_jobs("inside", 9))
        inside += await publish(publisher, make_jobs("inside", 2))  # the same jobs again: exported as logged
        await publisher.send_raw(topics.jobs, b"acme", b"{not an envelope")
        await publisher.send_raw(topics.jobs, b"acme", encode(publisher.envelope(
            AccountRegistered.model_validate({"account_id": "acme", "model": "payg"})
        )))
        await asyncio.sleep(0.3)
        until = datetime.now(UTC)
        await asyncio.sleep(0.3)
        after = await publish(publisher, make_jobs("after", 4))

    expected = Counter(key(e) for e in inside)
    window = ["--since", since.isoformat(), "--until", until.isoformat()]
    records = await read_topic(settings, topics.jobs, expect=len(before) + len(inside) + 2 + len(after))
    log_times = Counter(
        datetime.fromtimestamp(r.timestamp / 1000, UTC).isoformat()
        for r in records if since.timestamp() * 1000 <= r.timestamp < until.timestamp() * 1000
        and b"JobCompleted" in r.value
    )

    jsonl = await export(settings, *window)
    assert jsonl.exit_code == 0, jsonl.output
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert Counter(row_key(r) for r in rows) == expected
    assert Counter(r["logged_at"] for r in rows) == log_times
    assert "exported 11 jobs" in jsonl.stderr
    assert "1 bad records skipped" in jsonl.stderr and "not an event envelope" in jsonl.stderr
    assert "1 records of other event types" in jsonl.stderr

    as_csv = await export(settings, *window, "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    csv_rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert ordered(csv_rows) == ordered(rows)  # partitions interleave as they are fetched: compare as sets

    parquet = tmp_path / "jobs.parquet"
    result = await export(settings, *window, "--format", "parquet", "--output", str(parquet), "--row-group-rows", "4")
    assert result.exit_code == 0, result.output
    file = pq.ParquetFile(parquet)
    assert file.metadata.num_row_groups == 3  # 11 rows, 4 per group
    table = file.read().to_pylist()
    assert [r["completed_at"].tzinfo is not None for r in table] == [True] * 11
    as_text = [{k: v.isoformat() if isinstance(v, datetime) else v for k, v in r.items()} for r in table]
    assert ordered(as_text) == ordered(rows)

    everything = await export(settings, "--format", "csv")
    assert everything.exit_code == 0, everything.output
    all_rows = list(csv.DictReader(io.StringIO(everything.stdout)))
    assert Counter(row_key(r) for r in all_rows) == Counter(key(e) for e in [*before, *inside, *after])

    since_only = await export(settings, "--since", until.isoformat())
    assert Counter(row_key(json.loads(line)) for line in since_only.stdout.splitlines()) == Counter(
        key(e) for e in after
    )
    until_only = await export(settings, "--until", since.isoformat())
    assert Counter(row_key(json.loads(line)) for line in until_only.stdout.splitlines()) == Counter(
        key(e) for e in before
    )


async def test_output_file_and_refusals(settings: Settings, tmp_path: Path) -> None:
    topics = Topics(settings.jobmeter_topic_prefix)
    await ensure_topics(settings.kafka_bootstrap_servers, topics, settings.jobmeter_partitions)
    async with Publisher(settings.kafka_bootstrap_servers, producer="test", topics=topics) as publisher:
        published = await publish(publisher, make_jobs("f", 3))

    out = tmp_path / "jobs.jsonl"
    result = await export(settings, "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert Counter(row_key(json.loads(line)) for line in out.read_text().splitlines()) == Counter(
        key(e) for e in published
    )

    refused = await export(settings, "--format", "parquet")
    assert refused.exit_code == 2 and "--output" in refused.output
    backwards = await export(settings, "--since", "2026-11-02T00:00:00Z", "--until", "2026-11-01T00:00:00Z")
    assert backwards.exit_code == 2 and "is not before" in backwards.output
    no_zone = await export(settings, "--since", "2026-11-02T00:00:00")
    assert no_zone.exit_code == 2 and "no time zone" in no_zone.output
