"""HTTP ingest against the real Kafka and Postgres: acknowledged only after Kafka has the events."""

from __future__ import annotations

import json

import pytest

from events.jobs import JobCompleted, JobsCompleted
from events.publisher import Publisher
from events.registry import REGISTRY
from events.topics import Topics, ensure_topics
from jobmeter.settings import Settings
from services.cli.simulate import post_jobs
from services.engine.runtime import build_runtime
from services.http.app import create_app
from services.platform.serving import serving
from tests.integration.helpers import INGEST, client_for, eventually, fetchval, job, read_to_end, read_topic

pytestmark = pytest.mark.integration



async def test_batch_is_published_with_per_item_errors_and_duplicates(settings: Settings) -> None:
    app = create_app(settings, consumers=["ledger"])
    async with client_for(app) as client:
        sent = [job("acme", "j-1"), job("acme", "j-2", api="classify", mode="async")]
        batch = [
            *sent,
            {"account_id": "acme", "api": "nope", "job_id": "j-3", "channel": "direct", "mode": "sync",
             "completed_at": "2026-11-01T10:00:00Z"},
            job("acme", "j-1"),  # the same job again, in the same batch
            "not an object",
            {**job("acme", "j-4"), "completed_at": "2026-11-01T10:00:00"},  # no zone
        ]
        response = await client.post("/v1/jobs/completed", json=batch, headers=INGEST)
        assert response.status_code == 202, response.text
        body = response.json()
        assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, 3)
        assert [e["index"] for e in body["errors"]] == [2, 4, 5]
        assert body["errors"][0]["errors"][0]["field"] == "api"
        assert "unknown API surface" in body["errors"][0]["errors"][0]["message"]
        assert body["errors"][2]["errors"][0]["field"] == "completed_at"
        assert body["unknown_accounts"] == ["acme"]

        again = await client.post("/v1/jobs/completed", json=job("acme", "j-2", api="classify"), headers=INGEST)
        assert again.status_code == 202
        assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 1)

        # The request's new jobs of one account went out as one record, in the order sent, named by its jobs.
        records = await read_to_end(settings, "jobs")
        assert [r.key for r in records] == [b"acme"]
        envelope, published = REGISTRY.decode(records[0].value or b"")
        expected = JobsCompleted(account_id="acme", jobs=tuple(JobCompleted.model_validate(j) for j in sent))
        assert published == expected
        assert list(published.facts()) == list(expected.jobs)
        assert str(envelope.event_id) == str(expected.natural_id())

        total = await eventually(
            lambda: fetchval(settings, "SELECT coalesce(sum(jobs), 0) FROM ledger.hourly"), lambda v: v == 2
        )
        assert total == 2


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"42", 422, "expected a JSON object"),
        (b"[]", 422, "empty"),
        (json.dumps([{"api": "extract"}]).encode(), 422, None),
    ],
)
async def test_bad_bodies_get_a_clear_4xx(settings: Settings, body: bytes, status: int, reason: str | None) -> None:
    async with client_for(create_app(settings)) as client:
        response = await client.post("/v1/jobs/completed", content=body, headers=INGEST)
    assert response.status_code == status, response.text
    if reason:
        assert reason in response.json()["detail"]


async def test_token_and_batch_limits(settings: Settings) -> None:
    small = settings.model_copy(update={"jobmeter_ingest_max_batch": 3})
    async with client_for(create_app(small)) as client:
        assert (await client.post("/v1/jobs/completed", json=job("a", "1"))).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.post("/v1/jobs/completed", json=job("a", "1"), headers=wrong)).status_code == 401
        big = [job("a", str(i)) for i in range(4)]
        response = await client.post("/v1/jobs/completed", json=big, headers=INGEST)
        assert response.status_code == 413
        assert "limit of 3" in response.json()["detail"]


async def test_simulated_job_traffic_is_acknowledged_and_counted(settings: Settings) -> None:
    async with serving(create_app(settings, consumers=["ledger"])) as url:
        book = await post_jobs(settings, 450, accounts=3, bad_ratio=0.2, size=100, url=url)
        assert len(book.acknowledged) + book.refused == 450
        assert book.refused > 0
        await eventually(
            lambda: fetchval(settings, "SELECT coalesce(sum(jobs), 0) FROM ledger.hourly"),
            lambda v: v == len(book.acknowledged),
        )


async def test_the_python_publisher_path_keys_by_account_and_repeats_are_one_job(settings: Settings) -> None:
    topics = Topics(settings.jobmeter_topic_prefix)
    await ensure_topics(settings.kafka_bootstrap_servers, topics, settings.jobmeter_partitions)
    first = JobCompleted.model_validate(job("acme", "p-1"))
    again = JobCompleted.model_validate(job("acme", "p-1", mode="async"))  # a retry, seen differently
    other = JobCompleted.model_validate(job("globex", "p-2", api="classify"))
    async with Publisher(settings.kafka_bootstrap_servers, producer="upstream", topics=topics) as publisher:
        ids = await publisher.publish_many([first, again, other])
    assert ids[0] == ids[1] != ids[2]  # the same job, the same event id, however it is sent again
    records = await read_topic(settings, topics.jobs, expect=3)
    assert [(r.key, REGISTRY.decode(r.value)[0].event_id) for r in records if r.key == b"acme"] == [
        (b"acme", ids[0]), (b"acme", ids[0])
    ]  # one key, so one partition and per-account order
    async with build_runtime(settings, ["ledger"]).running(producer="test"):
        await eventually(lambda: fetchval(settings, "SELECT count(*) FROM ledger.jobs"), lambda n: n == 2)
        assert await fetchval(settings, "SELECT mode FROM ledger.jobs WHERE job_id = 'p-1'") == "sync"


async def test_a_failed_publish_claims_nothing_and_answers_503(settings: Settings) -> None:
    quick = settings.model_copy(update={"jobmeter_ingest_publish_timeout_seconds": 1.0})
    app = create_app(quick)
    async with client_for(app) as client:
        res = app.state.runtime.res
        await res.publisher.stop()  # Kafka out of reach, as far as this process can tell
        response = await client.post("/v1/jobs/completed", json=[job("acme", "lost-1")], headers=INGEST)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1" and "retry" in response.json()["detail"]
        # Nothing was acknowledged, so nothing may be remembered as received: the retry must be accepted.
        assert await fetchval(settings, "SELECT count(*) FROM ingest.receipts") == 0


async def test_receipts_past_their_days_are_pruned_and_a_late_retry_still_counts_once(settings: Settings) -> None:
    often = settings.model_copy(update={"jobmeter_retention_interval_seconds": 0.2})
    app = create_app(often, consumers=["ledger"])
    async with client_for(app) as client:
        first = await client.post("/v1/jobs/completed", json=[job("acme", "old-1"), job("acme", "new-1")],
                                  headers=INGEST)
        assert first.json()["accepted"] == 2
        await fetchval(settings, "UPDATE ingest.receipts SET received_at = now() - interval '36 days' "
                                 "WHERE job_id = 'old-1'")
        await eventually(lambda: fetchval(settings, "SELECT array_agg(job_id) FROM ingest.receipts"),
                         lambda ids: ids == ["new-1"])
        # A client retrying after the window: ingest no longer knows the job and publishes it again...
        retry = await client.post("/v1/jobs/completed", json=[job("acme", "old-1"), job("acme", "new-1")],
                                  headers=INGEST)
        assert (retry.json()["accepted"], retry.json()["duplicates"]) == (1, 1)
        # One record per request (one account each): the first request's and the retry's
        await eventually(lambda: fetchval(settings, "SELECT sum(next_offset) FROM ledger.positions"), lambda n: n == 2)
        # ...and the ledger, which counts by (api, job_id), still counts it once.
        assert await fetchval(settings, "SELECT sum(jobs) FROM ledger.hourly") == 2
