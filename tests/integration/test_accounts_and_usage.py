"""Accounts over HTTP, and the usage they read back from the ledger, on the real stack."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from jobmeter.settings import Settings
from services.http.app import create_app
from tests.integration.helpers import ADMIN, INGEST, client_for, eventually, job

pytestmark = pytest.mark.integration



async def test_accounts_are_registered_once_and_listed(settings: Settings) -> None:
    async with client_for(create_app(settings, consumers=["accounts"])) as client:
        assert (await client.get("/v1/accounts", headers={"Authorization": "Bearer x"})).status_code == 401
        created = await client.post(
            "/v1/accounts", json={"account_id": "acme", "model": "subscription", "stripe_customer_id": "cus_A1"},
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text
        assert created.json()["stripe_customer_id"] == "cus_A1"
        again = await client.post("/v1/accounts", json={"account_id": "acme", "model": "payg"}, headers=ADMIN)
        assert again.status_code == 409
        same_customer = await client.post(
            "/v1/accounts", json={"account_id": "acme-2", "model": "subscription", "stripe_customer_id": "cus_A1"},
            headers=ADMIN,
        )
        assert same_customer.status_code == 409, same_customer.text  # not a 202 the fold would then refuse
        assert "already belongs to account 'acme'" in same_customer.json()["detail"]
        bad = await client.post("/v1/accounts", json={"account_id": "bad id", "model": "payg"}, headers=ADMIN)
        assert bad.status_code == 422
        listed = (await client.get("/v1/accounts", headers=ADMIN)).json()
        assert [(a["account_id"], a["model"]) for a in listed] == [("acme", "subscription")]
        assert (await client.get("/v1/accounts/nobody", headers=ADMIN)).status_code == 404

        # A job for a registered account is not flagged; one for a stranger is accepted and flagged.
        response = await client.post(
            "/v1/jobs/completed", json=[job("acme", "1"), job("stranger", "2")], headers=INGEST
        )
        assert response.json()["accepted"] == 2
        assert response.json()["unknown_accounts"] == ["stranger"]


async def test_usage_groups_by_api_channel_and_day(settings: Settings) -> None:
    day1 = datetime(2026, 10, 30, 10, 5, tzinfo=UTC)
    day2 = datetime(2026, 10, 31, 23, 59, tzinfo=UTC)
    batch = [
        job("acme", "a1", api="extract", at=day1),
        job("acme", "a2", api="extract", at=day1),
        job("acme", "a3", api="classify", channel="rapidapi", at=day2),
        job("acme", "a4", api="extract", at=datetime(2026, 11, 1, 0, 0, tzinfo=UTC)),  # next month
        job("other", "o1", api="extract", at=day1),
    ]
    async with client_for(create_app(settings, consumers=["ledger"])) as client:
        assert (await client.post("/v1/jobs/completed", json=batch, headers=INGEST)).status_code == 202
        url = "/v1/accounts/acme/usage"
        params = {"from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z", "group_by": "api,channel,day"}
        body = await eventually(
            lambda: _json(client, url, params), lambda b: b.get("total") == 3
        )
        assert body["account_id"] == "acme"
        assert body["groups"] == [
            {"api": "classify", "channel": "rapidapi", "day": "2026-10-31", "jobs": 1},
            {"api": "extract", "channel": "direct", "day": "2026-10-30", "jobs": 2},
        ]
        bad = await client.get(url, params={**params, "group_by": "planet"}, headers=ADMIN)
        assert bad.status_code == 422 and "cannot group by planet" in bad.json()["detail"]
        odd = await client.get(url, params={**params, "from": "2026-10-01T00:30:00Z"}, headers=ADMIN)
        assert odd.status_code == 422 and "whole hour" in odd.json()["detail"]
        assert (await client.get(url, params=params)).status_code == 401


async def _json(client: httpx.AsyncClient, url: str, params: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(url, params=params, headers=ADMIN)).json()
    return body
