"""Admission on the real stack: while a consumer of the jobs is more than JOBMETER_INGEST_MAX_LAG behind, ingest
answers 503 with Retry-After and takes nothing; once it caught up, the same batch is taken."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from jobmeter.settings import Settings
from services.engine.runtime import build_runtime
from services.http.app import create_app
from services.ledger.admission import Admission
from services.platform.serving import serving
from tests.integration.helpers import INGEST, applied_to_end, eventually, fetchval, job, read_to_end

pytestmark = pytest.mark.integration

BOUND = 10


async def test_ingest_refuses_while_the_ledger_is_behind_and_takes_the_batch_once_it_caught_up(
    settings: Settings,
) -> None:
    s = settings.model_copy(update={"jobmeter_ingest_max_lag": BOUND, "jobmeter_ingest_lag_interval_seconds": 0.1})
    app = create_app(s)
    admission: Admission = app.state.admission

    async def refusal() -> str | None:
        await asyncio.sleep(0)
        return admission.refusal()

    async with serving(app) as url, httpx.AsyncClient(base_url=url, headers=INGEST) as client:
        async with build_runtime(s, ["ledger"]).running(producer="test-ledger"):
            first = await client.post("/v1/jobs/completed", json=[job("acme", f"a-{n}") for n in range(5)])
            assert first.status_code == 202, first.text
            await applied_to_end(s, "ledger", "jobs")  # the ledger stored its positions: it counts from now on
        # The ledger is stopped: these put it 20 jobs behind, past the bound.
        second = await client.post("/v1/jobs/completed", json=[job("acme", f"b-{n}") for n in range(2 * BOUND)])
        assert second.json()["accepted"] == 2 * BOUND, second.text
        await eventually(refusal, lambda why: why is not None)

        late = [job("acme", f"c-{n}") for n in range(3)]
        refused = await client.post("/v1/jobs/completed", json=late)
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert "ledger" in refused.json()["detail"] and f"{2 * BOUND} jobs" in refused.json()["detail"]
        assert len(await read_to_end(s, "jobs")) == 5 + 2 * BOUND  # nothing of the refused batch was published

        async with build_runtime(s, ["ledger"]).running(producer="test-ledger"):
            await eventually(refusal, lambda why: why is None)
            again = await client.post("/v1/jobs/completed", json=late)  # the client's retry, on the same connection
            assert again.status_code == 202, again.text
            assert again.json()["accepted"] == 3
            total = await eventually(
                lambda: fetchval(s, "SELECT coalesce(sum(jobs), 0) FROM ledger.hourly"), lambda v: v == 28
            )
            assert total == 28


async def test_without_a_bound_ingest_takes_jobs_however_far_behind(settings: Settings) -> None:
    app = create_app(settings)  # JOBMETER_INGEST_MAX_LAG unset: 0
    async with serving(app) as url, httpx.AsyncClient(base_url=url, headers=INGEST) as client:
        for n in range(3):
            response = await client.post("/v1/jobs/completed", json=[job("acme", f"{n}-{i}") for i in range(50)])
            assert response.status_code == 202, response.text
    assert app.state.admission.reading is None  # nothing watched
