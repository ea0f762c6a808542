"""`jobmeter forecast ACCOUNT --json` and `GET /v1/accounts/{id}/forecast` on the real stack: the ledger's jobs
of this month, and a forecast of it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from jobmeter.settings import Settings
from services.http.app import create_app
from services.ledger.periods import month_start, next_month
from tests.integration.cli import run_cli
from tests.integration.helpers import ADMIN, INGEST, applied_to_end, client_for, job, register

pytestmark = pytest.mark.integration


async def test_the_forecast_counts_this_months_jobs_of_the_account(settings: Settings) -> None:
    now = datetime.now(UTC)
    start = month_start(now)
    spread = (now - start) / 40
    batch = [job("acme", f"a{i}", api=("extract", "classify")[i % 2], at=start + spread * i) for i in range(40)]
    batch += [job("acme", "last-month", at=start - timedelta(hours=1)), job("other", "o1", at=start)]
    async with client_for(create_app(settings, consumers=["ledger", "accounts", "caps"])) as client:
        await register(client, "acme", "payg")
        assert (await client.post("/v1/jobs/completed", json=batch, headers=INGEST)).status_code == 202
        await applied_to_end(settings, "ledger", "jobs")
        await applied_to_end(settings, "accounts", "accounts")
        # A soft cap the month's first 40 jobs already reached: the forecast names the day it was reached.
        capped = await client.put("/v1/accounts/acme/caps", json={"jobs": 40, "hard": False}, headers=ADMIN)
        assert capped.status_code in (200, 202), capped.text
        await applied_to_end(settings, "caps", "accounts")
        answer = await client.get("/v1/accounts/acme/forecast", headers=ADMIN)
        assert answer.status_code == 200, answer.text
        over_http = answer.json()
        assert (await client.get("/v1/accounts/acme/forecast")).status_code == 401

    result = await run_cli(settings, "forecast", "acme", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["period"] == {"start": start.isoformat(), "end": next_month(start).isoformat()}
    assert body["jobs_to_date"] == 40
    assert 40 <= body["forecast_low"] <= body["forecast_jobs"] <= body["forecast_high"]
    assert body["cap_reached_on"] == max(j["completed_at"] for j in batch[:40])[:10]
    # PAYG: no plan, and the spend keeps the month's mix so far (half extract at 5, half classify at 3: 4 a job).
    assert (body["billing_model"], body["included_jobs"], body["forecast_overage_jobs"]) == ("payg", None, None)
    assert body["forecast_charge"] == {"amount": 4 * body["forecast_jobs"], "currency": "usd"}
    # The same answer over HTTP (the forecast itself moves with the clock between the two calls).
    assert (over_http["period"], over_http["jobs_to_date"]) == (body["period"], 40)
    assert 40 <= over_http["forecast_low"] <= over_http["forecast_jobs"] <= over_http["forecast_high"]

    unknown = json.loads((await run_cli(settings, "forecast", "nobody", "--json")).stdout)
    assert (unknown["jobs_to_date"], unknown["forecast_jobs"], unknown["forecast_high"]) == (0, 0, 0)
    assert (unknown["billing_model"], unknown["forecast_charge"]) == (None, None)


async def test_without_an_account_or_backtest_the_command_says_what_it_needs(settings: Settings) -> None:
    result = await run_cli(settings, "forecast")
    assert result.exit_code == 2
    assert "name an ACCOUNT" in result.output
