"""Replay against the real stack: a rebuild equals the live ledger, verify catches tampering, swap loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner, Result

from events.jobs import JobCompleted, LegacyOperation
from events.publisher import Publisher
from events.topics import Topics, ensure_topics
from jobmeter.settings import Settings, get_settings
from projections import catalog, replay
from projections.replay.shadow import ReplayError
from services.cli.main import app
from services.engine.runtime import build_runtime
from tests.integration.helpers import eventually, fetchval, read_to_end

pytestmark = pytest.mark.integration

LEDGER = "ledger"
T0 = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
TOTAL = "SELECT coalesce(sum(jobs), 0) FROM ledger.hourly"


def make_jobs(tag: str, n: int) -> list[JobCompleted]:
    """Jobs over several accounts (so several partitions) and hours (so several hourly rows)."""
    return [
        JobCompleted.model_validate({
            "account_id": f"acct-{i % 7}", "api": ("extract", "classify")[i % 2], "job_id": f"{tag}-{i}",
            "channel": ("direct", "rapidapi")[i % 3 == 0], "mode": "sync",
            "completed_at": T0 + timedelta(minutes=17 * i),
        })
        for i in range(n)
    ]


async def publish(settings: Settings, jobs: list[JobCompleted]) -> None:
    topics = Topics(settings.jobmeter_topic_prefix)
    async with Publisher(settings.kafka_bootstrap_servers, producer="test", topics=topics) as publisher:
        await publisher.publish_many(jobs)


async def total_is(settings: Settings, expected: int) -> None:
    await eventually(lambda: fetchval(settings, TOTAL), lambda v: v == expected)


@contextlib.contextmanager
def cli_env(settings: Settings) -> Iterator[dict[str, str]]:
    """Environment for the CLI to reach this test's slice of the stack; get_settings is cached per process."""
    get_settings.cache_clear()
    try:
        yield {
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "DATABASE_URL": settings.database_url,
            "JOBMETER_TOPIC_PREFIX": settings.jobmeter_topic_prefix,
        }
    finally:
        get_settings.cache_clear()


async def jobmeter(settings: Settings, *args: str) -> Result:
    """Run the CLI in a thread: it runs its own event loop, while this test's loop keeps the consumer going."""
    with cli_env(settings) as env:
        return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


async def test_rebuild_equals_live_and_verify_reports_a_tampered_row(settings: Settings) -> None:
    first = make_jobs("a", 300)
    async with build_runtime(settings, ["ledger"]).running(producer="t"):
        await publish(settings, first)
        await publish(settings, first[:20])  # published twice: counted once, by live and by the rebuild alike
        await total_is(settings, 300)

        result = await replay.rebuild(settings, LEDGER)
        assert (result.records, result.partial, result.dead) == (320, False, 0)
        assert sum(result.stop.values()) == 320
        assert await fetchval(settings, "SELECT count(*) FROM ledger__rebuild.jobs") == 300

        # Live moves past the rebuild's high watermarks; verify must compare at the same positions anyway.
        await publish(settings, make_jobs("b", 50))
        await total_is(settings, 350)
        assert await replay.verify(settings, LEDGER) == []
        assert await fetchval(settings, "SELECT count(*) FROM ledger__rebuild.jobs") == 350

        await fetchval(
            settings,
            """UPDATE ledger.hourly SET jobs = jobs + 1
               WHERE (account_id, api, channel, hour) = (SELECT account_id, api, channel, hour FROM ledger.hourly
                                                         ORDER BY 1, 2, 3, 4 LIMIT 1)""",
        )
        (difference,) = await replay.verify(settings, LEDGER)
        assert (difference.table, difference.only_live, difference.only_rebuild) == ("hourly", 1, 1)
        assert difference.live_sample[0]["jobs"] == difference.rebuild_sample[0]["jobs"] + 1

        cli = await jobmeter(settings, "replay", LEDGER, "--verify")
        assert cli.exit_code == 1, cli.output
        assert "hourly differs" in cli.stdout
        assert "only in live 1, only in rebuild 1" in cli.stdout

        cli = await jobmeter(settings, "replay", LEDGER, "--verify", "--swap")
        assert cli.exit_code == 1, cli.output
        assert "not swapping" in cli.stderr
        assert await fetchval(settings, "SELECT count(*) FROM pg_namespace WHERE nspname = 'ledger__rebuild'") == 1


async def test_swap_under_traffic_loses_nothing_and_live_keeps_applying(settings: Settings) -> None:
    published: set[str] = set()

    async def publish_counted(jobs: list[JobCompleted]) -> None:
        await publish(settings, jobs)
        published.update(j.job_id for j in jobs)

    async def keep_publishing(stop: asyncio.Event) -> None:
        round_ = 0
        while not stop.is_set():
            batch = make_jobs(f"during{round_}", 10)
            await publish_counted(batch + make_jobs("before", 3))  # with jobs the ledger already has
            round_ += 1
            await asyncio.sleep(0.02)

    async with build_runtime(settings, ["ledger"]).running(producer="t"):
        await publish_counted(make_jobs("before", 200))
        await total_is(settings, 200)

        stop = asyncio.Event()
        traffic = asyncio.create_task(keep_publishing(stop))
        try:
            await replay.rebuild(settings, LEDGER)
            await asyncio.sleep(0.3)  # more arrives between the rebuild and the swap
            old = await replay.swap(settings, LEDGER)
            await asyncio.sleep(0.3)  # and more after it, while the consumer runs on the swapped-in schema
        finally:
            stop.set()
            await traffic
        assert old.startswith("ledger__old_")
        during = len(published) - 200
        assert during >= 30, "the traffic should have overlapped the rebuild and the swap"

        await publish_counted(make_jobs("after", 40))
        await total_is(settings, len(published))  # the live consumer still applies, exactly once each
        assert await fetchval(settings, "SELECT count(*) FROM ledger.jobs") == len(published)
        schemas = await fetchval(
            settings, "SELECT string_agg(nspname, ',') FROM pg_namespace WHERE nspname LIKE 'ledger%'"
        )
        assert schemas == "ledger"


async def test_since_rebuilds_part_of_the_log_and_cannot_be_swapped(settings: Settings) -> None:
    await ensure_topics(settings.kafka_bootstrap_servers, Topics(settings.jobmeter_topic_prefix), 3)
    await publish(settings, make_jobs("early", 10))
    await asyncio.sleep(0.3)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.3)
    await publish(settings, make_jobs("late", 7))

    result = await replay.rebuild(settings, LEDGER, since=middle)
    assert (result.partial, result.records) == (True, 7)
    assert await fetchval(settings, "SELECT count(*) FROM ledger__rebuild.jobs WHERE job_id LIKE 'late-%'") == 7
    assert await fetchval(settings, "SELECT count(*) FROM ledger__rebuild.jobs") == 7
    with pytest.raises(ReplayError, match="partial rebuild"):
        await replay.swap(settings, LEDGER)
    with pytest.raises(ReplayError, match="partial rebuild"):
        await replay.verify(settings, LEDGER)

    cli = await jobmeter(settings, "replay", LEDGER, "--since", middle.isoformat(), "--swap")
    assert cli.exit_code == 2, cli.output
    assert "--since cannot be combined with --swap" in cli.stderr
    cli = await jobmeter(settings, "replay", LEDGER, "--since", middle.isoformat())
    assert cli.exit_code == 0, cli.output
    assert "PARTIAL rebuild" in cli.stderr
    assert "7 records read" in cli.stdout
    cli = await jobmeter(settings, "replay", LEDGER, "--since", "2026-11-03T08:00:00")
    assert cli.exit_code == 2
    assert "no time zone" in cli.output


async def test_swapping_an_emitting_projection_does_not_publish_its_history_again(settings: Settings) -> None:
    topics = Topics(settings.jobmeter_topic_prefix)
    ops = [
        LegacyOperation.model_validate({
            "kind": "sync_call_finished", "account_id": f"acct-{i % 3}", "api": "extract", "job_id": f"legacy-{i}",
            "occurred_at": T0 + timedelta(minutes=i),
        })
        for i in range(25)
    ]
    unsent = "SELECT count(*) FROM normalizer.outbox WHERE sent_at IS NULL"
    async with build_runtime(settings, ["normalizer"]).running(producer="t"):
        async with Publisher(settings.kafka_bootstrap_servers, producer="legacy", topics=topics) as publisher:
            await publisher.publish_many(ops[:20])
            await eventually(lambda: fetchval(settings, "SELECT count(*) FROM normalizer.outbox"), lambda n: n == 20)
            await eventually(lambda: fetchval(settings, unsent), lambda n: n == 0)

            await replay.rebuild(settings, "normalizer")
            assert await fetchval(settings, "SELECT count(*) FROM normalizer__rebuild.outbox") == 20
            await publisher.publish_many(ops[20:])  # new work the rebuild catches up on during the swap
            await replay.swap(settings, "normalizer")

        # Only the five new jobs go out: what live had sent is marked sent in the swapped-in outbox.
        await eventually(lambda: fetchval(settings, "SELECT count(*) FROM normalizer.outbox"), lambda n: n == 25)
        await eventually(lambda: fetchval(settings, unsent), lambda n: n == 0)
        records = await read_to_end(settings, "jobs")  # the outbox has nothing unsent: all of it is on the topic
        assert len(records) == 25


async def test_projections_with_their_own_sent_state_cannot_be_swapped(settings: Settings) -> None:
    cli = await jobmeter(settings, "replay", "meter", "--swap")
    assert cli.exit_code == 2, cli.output
    assert "meter cannot be swapped" in cli.stderr
    with pytest.raises(ReplayError, match="cannot be swapped"):
        await replay.swap(settings, "key-lifecycle")


async def test_the_former_names_of_the_ledger_and_the_meter_still_name_them(settings: Settings) -> None:
    assert catalog.get("usage-ledger") is catalog.PROJECTIONS["ledger"]
    assert catalog.get("stripe-meter") is catalog.PROJECTIONS["meter"]
    with pytest.raises(KeyError, match="no projection 'usage'"):
        catalog.get("usage")
    # Where an operator types one: the command resolves it before refusing a swap it cannot make.
    cli = await jobmeter(settings, "replay", "stripe-meter", "--swap")
    assert cli.exit_code == 2, cli.output
    assert "meter cannot be swapped" in cli.stderr
