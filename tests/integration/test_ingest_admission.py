"""Admission on the real stack: while a consumer of the jobs is more than JOBMETER_INGEST_MAX_LAG behind, ingest
answers 503 with Retry-After and takes nothing; once it caught up, the same batch is taken. The lag is read in
records and counted in jobs at the jobs per record this ingest published."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from jobmeter.settings import Settings
from services.engine.runtime import build_runtime
from services.http.app import create_app
from services.ledger.admission import Admission, Reading
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

    async def jobs_per_record() -> float | None:
        await asyncio.sleep(0)
        return None if admission.reading is None else admission.reading.jobs_per_record

    async with serving(app) as url, httpx.AsyncClient(base_url=url, headers=INGEST) as client:
        async with build_runtime(s, ["ledger"]).running(producer="test-ledger"):
            first = await client.post("/v1/jobs/completed", json=[job("acme", f"a-{n}") for n in range(5)])
            assert first.status_code == 202, first.text
            await applied_to_end(s, "ledger", "jobs")  # the ledger stored its positions: it counts from now on
            await eventually(jobs_per_record, lambda n: n == 5)  # 5 jobs in one record, read before the next
        # The ledger is stopped: these put it 20 jobs behind, past the bound, in two records (one per account),
        # under it: only counting each record as the 10 jobs it holds refuses.
        batch = [job(account, f"b-{account}-{n}") for account in ("acme", "beta") for n in range(BOUND)]
        second = await client.post("/v1/jobs/completed", json=batch)
        assert second.json()["accepted"] == 2 * BOUND, second.text
        await eventually(refusal, lambda why: why is not None)
        assert admission.reading is not None and admission.reading.records == {"ledger": 2}
        since = admission.reading.at

        async def later() -> Reading | None:
            await asyncio.sleep(0)
            return admission.reading

        # A reading of an interval with nothing published keeps the previous interval's ratio.
        after = await eventually(later, lambda r: r is not None and r.at > since)
        assert after is not None and after.jobs_per_record == 10 and after.behind == {"ledger": 2 * BOUND}

        late = [job("acme", f"c-{n}") for n in range(3)]
        refused = await client.post("/v1/jobs/completed", json=late)
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert "ledger" in refused.json()["detail"] and f"about {2 * BOUND} jobs" in refused.json()["detail"]
        assert "(2 records of ~10 jobs" in refused.json()["detail"]
        assert len(await read_to_end(s, "jobs")) == 1 + 2  # records: nothing of the refused batch was published

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
