"""The sample gateway on the real stack: keys checked by jobmeter, one JobCompleted per job, marketplace traffic
through the RapidAPI middleware."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from events.jobs import JobCompleted
from events.registry import REGISTRY
from jobmeter.settings import Settings
from services.gateway.sample_app import create_gateway, running_gateway
from services.gateway.sample_client import Call, JobFailed, complete_job, run_jobs, surfaces
from services.http.app import create_app
from services.platform.serving import free_port
from tests.integration.helpers import ADMIN, client_for, eventually, read_to_end, register
from tests.integration.test_console_auth import log_in

pytestmark = pytest.mark.integration



@asynccontextmanager
async def engine_and_gateway(
    settings: Settings, consumers: tuple[str, ...] = ("accounts", "keys"), async_seconds: float = 0.5
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    engine = create_app(settings, consumers=list(consumers))
    async with client_for(engine) as jobmeter:
        gateway = create_gateway(settings, keycheck_transport=httpx.ASGITransport(app=engine),
                                 async_seconds=async_seconds)
        async with client_for(gateway) as client:
            yield jobmeter, client


async def new_key(jobmeter: httpx.AsyncClient, account: str) -> dict[str, str]:
    await register(jobmeter, account)
    key = await jobmeter.post("/v1/keys", json={"account_id": account}, headers=ADMIN)
    assert key.status_code == 201, key.text
    secret = key.json()["key"]

    async def check() -> int:
        return (await jobmeter.get("/v1/keys/check", headers={"Authorization": f"Bearer {secret}"})).status_code

    await eventually(check, lambda status: status == 200, timeout=10)
    return {"Authorization": f"Bearer {secret}"}


async def jobs_published(settings: Settings) -> list[JobCompleted]:
    """The jobs topic as it is now: the gateway answers a job "done" only once its event is on Kafka."""
    events = [REGISTRY.decode(r.value or b"")[1] for r in await read_to_end(settings, "jobs")]
    jobs = [e for e in events if isinstance(e, JobCompleted)]
    assert jobs == events, events
    return jobs


async def test_sync_and_async_jobs_are_published_once_on_completion(settings: Settings) -> None:
    sync_api, _, async_api, _ = settings.jobmeter_apis
    # The async job takes 2 s: ample time to read the log between its submit and its completion.
    async with engine_and_gateway(settings, async_seconds=2.0) as (jobmeter, gateway):
        key = await new_key(jobmeter, "acme")
        done = await gateway.post(f"/v1/{sync_api}", json={"text": "3 apples and 4 pears"},
                                  headers={**key, "Idempotency-Key": "order-1"})
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "done" and done.json()["result"]["words"] == 5
        again = await gateway.post(f"/v1/{sync_api}", json={"text": "3 apples"}, headers={**key,
                                                                                        "Idempotency-Key": "order-1"})
        assert again.status_code == 200  # a retry: the same job, published with the same natural id

        submitted = await gateway.post(f"/v1/{async_api}/jobs", json={"text": "one two three"}, headers=key)
        assert submitted.status_code == 202
        job_id = submitted.json()["job_id"]
        assert submitted.json()["status"] == "pending"
        poll = f"/v1/{async_api}/jobs/{job_id}"
        first = await gateway.get(poll, headers=key)
        assert first.json()["status"] == "pending"
        # Submitted, not completed: only the sync job is on the log so far.
        assert [(e.api, e.job_id) for e in await jobs_published(settings)] == \
            [(sync_api, "acme:order-1")] * 2

        async def status() -> str:
            return str((await gateway.get(poll, headers=key)).json()["status"])

        await eventually(status, lambda s: s == "done", timeout=10)
        for _ in range(3):  # polling a finished job publishes nothing more
            assert (await gateway.get(poll, headers=key)).json()["result"]["text"] == "three two one"
        events = await jobs_published(settings)
        assert sorted({(e.api, e.job_id, e.mode, e.channel, e.account_id) for e in events}) == sorted({
            (sync_api, "acme:order-1", "sync", "direct", "acme"), (async_api, job_id, "async", "direct", "acme"),
        })
        assert len([e for e in events if e.mode == "async"]) == 1

        # Someone else's job is not yours to poll, and the same Idempotency-Key is another job for another account.
        other = await new_key(jobmeter, "globex")
        assert (await gateway.get(poll, headers=other)).status_code == 404
        theirs = await gateway.post(f"/v1/{sync_api}", json={"text": "x"}, headers={**other,
                                                                                  "Idempotency-Key": "order-1"})
        assert theirs.json()["job_id"] == "globex:order-1"


async def test_no_key_no_work(settings: Settings) -> None:
    sync_api = settings.jobmeter_apis[0]
    async with engine_and_gateway(settings) as (_, gateway):
        missing = await gateway.post(f"/v1/{sync_api}", json={"text": "x"})
        unknown = await gateway.post(f"/v1/{sync_api}", json={"text": "x"},
                                     headers={"Authorization": "Bearer jm_live_nope"})
        assert (missing.status_code, unknown.status_code) == (401, 401)
        assert "missing API key" in missing.json()["detail"]
        # A marketplace header without RapidAPI's proxy secret is no way around the key check.
        forged = await gateway.post(f"/v1/{sync_api}", json={"text": "x"}, headers={"X-RapidAPI-User": "mallory"})
        assert forged.status_code == 403
        assert (await gateway.get("/healthz")).status_code == 200
    assert await jobs_published(settings) == []


async def test_marketplace_traffic_is_billed_to_rapidapi_once(settings: Settings) -> None:
    _, _, async_api, _ = settings.jobmeter_apis
    rapid = {"X-RapidAPI-Proxy-Secret": settings.rapidapi_proxy_secret.get_secret_value(),
             "X-RapidAPI-User": "marketfan", "X-RapidAPI-Subscription": "PRO"}
    async with engine_and_gateway(settings, ("accounts", "keys", "ledger", "rapidapi")) as (jobmeter, gateway):
        submitted = await gateway.post(f"/v1/{async_api}/jobs", json={"text": "hello"}, headers=rapid)
        assert submitted.status_code == 202, submitted.text
        assert submitted.headers["x-rapidapi-billing"] == "jobs=0"  # a submit is not a job done
        poll = submitted.json()["poll"]
        answers: list[httpx.Response] = []

        async def poll_once() -> str:
            answers.append(await gateway.get(poll, headers=rapid))
            return str(answers[-1].json()["status"])

        await eventually(poll_once, lambda status: status == "done", timeout=10)
        pending, first_done = answers[:-1], answers[-1]
        answers = [first_done] + [await gateway.get(poll, headers=rapid) for _ in range(2)]
        assert [a.json()["status"] for a in answers] == ["done"] * 3
        assert [a.headers["x-rapidapi-billing"] for a in answers] == ["jobs=1", "jobs=0", "jobs=0"]
        assert {(a.json()["status"], a.headers["x-rapidapi-billing"]) for a in pending} <= {("pending", "jobs=0")}

        # The console's reconciliation sees the job on both sides: in the ledger and declared to RapidAPI.
        await log_in(jobmeter)

        async def row() -> str:
            page = (await jobmeter.get("/console/rapidapi")).text
            found = re.search(r"<td>marketfan</td>.*?</tr>", page, re.S)
            return found.group(0) if found else ""

        seen = await eventually(row, lambda r: "<td>1</td><td>1</td>" in r, timeout=15)
        assert "agrees" in seen
    (event,) = await jobs_published(settings)
    assert (event.channel, event.mode) == ("rapidapi", "async")


async def test_the_sample_client_runs_a_job_on_every_surface_over_http(settings: Settings) -> None:
    engine = create_app(settings, consumers=["accounts", "keys"])
    async with (
        client_for(engine) as jobmeter,
        running_gateway(settings, port=free_port(), keycheck_transport=httpx.ASGITransport(app=engine),
                        async_seconds=0.2) as address,
        httpx.AsyncClient(base_url=address, timeout=10) as gateway,
    ):
        key = await new_key(jobmeter, "acme")
        sync_apis, async_apis = await surfaces(gateway)
        assert sync_apis + async_apis == list(settings.jobmeter_apis)
        for api in sync_apis + async_apis:
            done = await complete_job(gateway, api, asynchronous=api in async_apis, headers=key, text="a b c")
            assert done["status"] == "done"
        with pytest.raises(JobFailed, match="401"):
            await complete_job(gateway, sync_apis[0], asynchronous=False)
        calls = [Call(api, api in async_apis, key if n % 5 else {}) for n, api in
                 enumerate(settings.jobmeter_apis * 5)]
        results = await run_jobs(gateway, calls, concurrency=8)
        assert sum(isinstance(r, JobFailed) for r in results) == 4  # every fifth went without a key
    events = await jobs_published(settings)
    assert len(events) == 4 + 16
    assert sorted(e.api for e in events[:4]) == sorted(settings.jobmeter_apis)
