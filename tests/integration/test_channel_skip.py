"""The consumers that bill one channel's jobs (PAYG and the meter: direct; the RapidAPI channel: rapidapi) pass over
the job records that hold none of them unread, on the real stack, and PAYG and the meter those of accounts they
know another billing model bills: what each counts is exactly what it counted by decoding everything, its position
moves past what it passed over, and a record it cannot be sure of from its bytes (a channel written with a JSON
escape) is decoded and counted."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import pytest

from events.deadletters import DeadLettered
from events.envelope import EnvelopeWriter
from events.jobs import JobCompleted, jobs_completed_wire
from events.registry import REGISTRY
from events.types import Channel
from jobmeter.settings import Settings
from services.engine.runtime import build_runtime
from tests.integration.helpers import fetchval, read_to_end
from tests.integration.test_jobs_batches import BILLING, counted, kcat, registered

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kcat") is None, reason="needs Debian's kcat (.ci/run installs it)"),
]

WRITER = EnvelopeWriter(producer="ingest", occurred_at=datetime.now(UTC))


def job(account: str, job_id: str, channel: Channel, api: str = "extract") -> JobCompleted:
    return JobCompleted(account_id=account, api=api, job_id=job_id, channel=channel, mode="sync",
                        completed_at=datetime.now(UTC))


def record(account: str, *jobs: JobCompleted) -> tuple[str, str]:
    """A record as ingest writes it: the layout a consumer can tell a record's channels from."""
    return account, jobs_completed_wire(WRITER, account, jobs).decode()


async def test_records_of_the_other_channel_are_passed_over_and_what_is_counted_stays_exact(
    settings: Settings,
) -> None:
    await registered(settings)  # "paid" on PAYG, "subs" on a subscription
    escaped = record("subs", job("subs", "s-e", "rapidapi"))
    escaped = (escaped[0], escaped[1].replace('"rapidapi"', '"rapid\\u0061pi"'))
    lines = [
        record("paid", job("paid", "p-r1", "rapidapi"), job("paid", "p-r2", "rapidapi", api="classify")),
        record("paid", job("paid", "p-d1", "direct"), job("paid", "p-d2", "direct", api="translate")),
        record("subs", job("subs", "s-r1", "rapidapi")),
        record("subs", job("subs", "s-d1", "direct"), job("subs", "s-r2", "rapidapi")),
        escaped,
    ]
    async with build_runtime(settings, BILLING).running(producer="test"):
        await kcat(settings, lines)
        seen = await counted(settings)  # every consumer's position at the end of the jobs topic
    assert seen == {"ledger": 8, "hourly": 8, "payg": -(5 + 4), "debits": 2, "meter": 1, "caps": 8, "usage": 8,
                    "rapidapi": 5}
    assert await fetchval(settings, "SELECT string_agg(job_id, ',' ORDER BY job_id) FROM rapidapi.ledger_jobs") == (
        "p-r1,p-r2,s-e,s-r1,s-r2")
    letters = [REGISTRY.decode(r.value or b"")[1] for r in await read_to_end(settings, "deadletters")]
    assert letters == []


async def test_a_broken_record_passed_over_is_still_dead_lettered_by_the_consumers_that_read_every_job(
    settings: Settings,
) -> None:
    await registered(settings)
    account, value = record("paid", job("paid", "p-r1", "rapidapi"))
    broken = value.replace('"mode":"sync"', '"mode":"later"')
    async with build_runtime(settings, BILLING).running(producer="test"):
        await kcat(settings, [(account, broken), record("paid", job("paid", "p-d1", "direct"))])
        seen = await counted(settings)  # every consumer past the broken record, to the end of the topic
    assert seen == {"ledger": 1, "hourly": 1, "payg": -5, "debits": 1, "meter": 0, "caps": 1, "usage": 1,
                    "rapidapi": 0}
    letters = [REGISTRY.decode(r.value or b"")[1] for r in await read_to_end(settings, "deadletters")]
    by = sorted(d.consumer for d in letters if isinstance(d, DeadLettered) and d.offset == 0)
    assert by == ["caps", "ledger", "rapidapi"]  # PAYG and the meter bill direct jobs only: not theirs to judge


async def test_records_of_accounts_another_model_bills_are_passed_over_once_known_and_the_counts_stay_exact(
    settings: Settings,
) -> None:
    await registered(settings)
    async with build_runtime(settings, BILLING).running(producer="test"):
        # PAYG and the meter learn both accounts' models from the first records.
        first = [record("paid", job("paid", "p-1", "direct")), record("subs", job("subs", "s-1", "direct"))]
        await kcat(settings, first)
        assert (await counted(settings))["debits"] == 1
        broken_subs = record("subs", job("subs", "s-b", "direct"))
        broken_paid = record("paid", job("paid", "p-b", "direct"))
        later = [
            (broken_subs[0], broken_subs[1].replace('"mode":"sync"', '"mode":"later"')),  # offset 2
            (broken_paid[0], broken_paid[1].replace('"mode":"sync"', '"mode":"later"')),  # offset 3
            record("paid", job("paid", "p-2", "direct"), job("paid", "p-3", "direct", api="translate")),
            record("subs", job("subs", "s-2", "direct"), job("subs", "s-3", "direct")),
        ]
        await kcat(settings, later)
        seen = await counted(settings)
    assert seen == {"ledger": 6, "hourly": 6, "payg": -(5 + 5 + 4), "debits": 3, "meter": 3, "caps": 6, "usage": 6,
                    "rapidapi": 0}
    letters = [REGISTRY.decode(r.value or b"")[1] for r in await read_to_end(settings, "deadletters")]
    by = {(d.offset, d.consumer) for d in letters if isinstance(d, DeadLettered)}
    # Each broken record is judged by the consumers that read every job and by the one whose account it is; the
    # other passes it over, as it passes over every record of that account, without reading it.
    assert by == {(2, "ledger"), (2, "caps"), (2, "meter"), (3, "ledger"), (3, "caps"), (3, "payg")}
