"""Legacy page-era events through the normaliser consumer, onto the job topic, into the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events.jobs import LegacyOperation
from events.publisher import Publisher
from events.topics import Topics
from jobmeter.settings import Settings
from services.engine.runtime import build_runtime
from tests.integration.helpers import eventually, fetchval

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def op(kind: str, job_id: str, minutes: int = 0, pages: int = 0, api: str = "extract") -> LegacyOperation:
    return LegacyOperation.model_validate({
        "kind": kind, "account_id": "acme", "api": api, "job_id": job_id,
        "occurred_at": T0 + timedelta(minutes=minutes), "pages": pages,
    })


async def test_one_job_per_completed_job_whatever_the_pages(settings: Settings) -> None:
    ops = [
        *[op("pages_processed", "big", i, pages=1) for i in range(40)],
        op("sync_call_finished", "big", 41),
        op("sync_call_finished", "big", 41),  # delivered twice
        op("async_job_submitted", "slow", 1),
        op("async_job_finished", "slow", 30),
        op("async_job_submitted", "broken", 2),
        op("job_failed", "broken", 3),
        op("async_job_submitted", "pending", 4),  # not finished: bills nothing yet
        op("sync_call_finished", "big", 50, api="classify"),  # same id, other surface: another job
    ]
    topics = Topics(settings.jobmeter_topic_prefix)
    async with build_runtime(settings, ["normalizer", "ledger"]).running(producer="test"):
        async with Publisher(settings.kafka_bootstrap_servers, producer="legacy", topics=topics) as publisher:
            await publisher.publish_many(ops, event_ids=None)
        await eventually(
            lambda: fetchval(settings, "SELECT count(*) FROM ledger.jobs"), lambda n: n == 3
        )
        jobs = await fetchval(
            settings,
            "SELECT string_agg(api || ':' || job_id || ':' || mode, ',' ORDER BY api, job_id) FROM ledger.jobs",
        )
        assert jobs == "classify:big:sync,extract:big:sync,extract:slow:async"
        pages = "SELECT pages FROM normalizer.progress WHERE job_id = 'big' AND api = 'extract'"
        assert await fetchval(settings, pages) == 40
        assert await fetchval(settings, "SELECT count(*) FROM normalizer.outbox WHERE sent_at IS NULL") == 0
