"""API keys on the real stack: issue, check, rotate, revoke; and the whole dunning path from a signed webhook
to the key check and back."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from events.keys import KeyRestored, KeySuspended
from events.registry import REGISTRY
from jobmeter.settings import Settings
from services.devtools.sandbox import service_env
from services.gateway.keycheck import KeyCheckMiddleware
from services.http.app import create_app
from services.stripe_adapter.fixtures import build_event, encode_event
from services.stripe_adapter.webhooks import sign
from tests.integration.helpers import ADMIN, applied_to_end, client_for, eventually, fetchval, read_to_end

pytestmark = pytest.mark.integration



def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def register(client: httpx.AsyncClient, account: str, customer: str, model: str = "subscription") -> None:
    response = await client.post(
        "/v1/accounts", json={"account_id": account, "model": model, "stripe_customer_id": customer}, headers=ADMIN
    )
    assert response.status_code == 201, response.text


async def new_key(client: httpx.AsyncClient, account: str) -> dict[str, Any]:
    response = await client.post("/v1/keys", json={"account_id": account}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def check(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.get("/v1/keys/check", headers=bearer(key))


async def until_status(client: httpx.AsyncClient, key: str, status: int, timeout: float = 10) -> float:
    """Seconds until the key check answers `status`."""
    started = time.monotonic()
    await eventually(lambda: check(client, key), lambda r: r.status_code == status, timeout=timeout)
    return time.monotonic() - started


async def test_keys_are_issued_checked_rotated_and_revoked(settings: Settings) -> None:
    async with client_for(create_app(settings, consumers=["accounts", "keys"])) as client:
        await register(client, "acme", "cus_ACME", model="payg")
        key = await new_key(client, "acme")
        assert key["key"].startswith("jm_live_") and key["state"] == "active"
        assert key["key"].startswith(key["prefix"]) and len(key["prefix"]) < 16

        await until_status(client, key["key"], 200)
        ok = (await check(client, key["key"])).json()
        assert ok == {"account_id": "acme", "key_id": key["key_id"], "state": "active", "billing_model": "payg"}
        assert (await check(client, key["key"] + "x")).status_code == 401
        assert (await client.get("/v1/keys/check")).status_code == 401

        rotated = await client.post(f"/v1/keys/{key['key_id']}/rotate", headers=ADMIN)
        assert rotated.status_code == 201, rotated.text
        fresh = rotated.json()
        assert fresh["revoked"]["state"] == "revoked"
        assert await until_status(client, key["key"], 403) < 1.0
        assert (await check(client, key["key"])).json()["state"] == "revoked"
        await until_status(client, fresh["key"], 200)

        revoked = await client.post(f"/v1/keys/{fresh['key_id']}/revoke", json={"reason": "leaked"}, headers=ADMIN)
        assert revoked.json()["revoke_reason"] == "leaked"
        assert await until_status(client, fresh["key"], 403) < 1.0
        again = await client.post(f"/v1/keys/{fresh['key_id']}/revoke", headers=ADMIN)
        assert again.status_code == 409

        listed = (await client.get("/v1/keys", params={"account_id": "acme"}, headers=ADMIN)).json()
        assert {k["key_id"]: k["state"] for k in listed} == {key["key_id"]: "revoked", fresh["key_id"]: "revoked"}
        assert all("key" not in k and "key_hash" not in k for k in listed)
        assert (await client.post("/v1/keys", json={"account_id": "nobody"}, headers=ADMIN)).status_code == 404
        assert (await client.post("/v1/keys", json={"account_id": "acme"})).status_code == 401

    by_hash = "SELECT count(*) FROM keys.keys WHERE key_hash = encode(sha256($1::bytea), 'hex')"
    hashes = await fetchval(settings, by_hash, key["key"].encode())
    assert hashes == 1
    assert await fetchval(settings, "SELECT count(*) FROM keys.keys WHERE prefix = $1", key["key"]) == 0


async def test_cli_prints_the_secret_once_as_json(settings: Settings) -> None:
    env = service_env(settings)
    async with client_for(create_app(settings, consumers=["accounts", "keys"])) as client:
        await register(client, "cli-co", "cus_CLI")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli.main", "keys", "create", "cli-co", "--json", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        created = json.loads(out)
        assert created["key"].startswith("jm_live_") and created["account_id"] == "cli-co"
        await until_status(client, created["key"], 200)


async def signed_post(client: httpx.AsyncClient, event: dict[str, Any]) -> None:
    body = encode_event(event)
    headers = {"Stripe-Signature": sign(body, "whsec_dev")}
    response = await client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 200, response.text


async def test_payment_failure_suspends_keys_and_payment_restores_them(settings: Settings) -> None:
    consumers = ["accounts", "keys", "key-lifecycle"]
    async with client_for(create_app(settings, consumers=consumers)) as client:
        await register(client, "dunned", "cus_DUNNED")
        key = (await new_key(client, "dunned"))["key"]
        await until_status(client, key, 200)

        retry = build_event("invoice.payment_failed", "cus_DUNNED", created=int(time.time()) - 60)
        await signed_post(client, retry)
        # Decided on (the lifecycle's positions are past it), and nothing to publish: a suspension would be queued
        # in its outbox by the same transaction.
        await applied_to_end(settings, "key_lifecycle", "stripe")
        assert await fetchval(settings, "SELECT count(*) FROM key_lifecycle.outbox") == 0
        assert (await check(client, key)).status_code == 200  # Stripe will retry: keys keep working

        failed = build_event("invoice.payment_failed", "cus_DUNNED", final=True, created=int(time.time()) - 30,
                             invoice_id=retry["data"]["object"]["id"])  # the same invoice's last attempt
        await signed_post(client, failed)
        denied_after = await until_status(client, key, 403)
        body = (await check(client, key)).json()
        assert body["state"] == "suspended" and "will not retry" in body["reason"]
        await signed_post(client, failed)  # Stripe delivers it again

        paid = build_event("invoice.paid", "cus_DUNNED", created=int(time.time()) - 10)
        paid["data"]["object"]["id"] = failed["data"]["object"]["id"]
        await signed_post(client, paid)
        allowed_after = await until_status(client, key, 200)

        # A late failure of the invoice now paid (an attempt older than the payment) changes nothing.
        late = build_event("invoice.payment_failed", "cus_DUNNED", final=True, created=int(time.time()) - 20,
                           invoice_id=failed["data"]["object"]["id"])
        await signed_post(client, late)
        await applied_to_end(settings, "key_lifecycle", "stripe")
        assert await fetchval(settings, "SELECT count(*) FROM key_lifecycle.outbox") == 2  # suspended, restored
        assert (await check(client, key)).status_code == 200

        sent = await eventually(
            lambda: fetchval(settings, "SELECT count(*) FROM key_lifecycle.notifications WHERE sent_at IS NOT NULL"),
            lambda n: n == 2,
        )
        assert sent == 2
    print(f"suspension reached the check in {denied_after:.3f}s, restoration in {allowed_after:.3f}s")
    assert denied_after < 1.0 and allowed_after < 1.0

    records = await read_to_end(settings, "keys")  # both reached the check, so both are on the topic
    decoded = (REGISTRY.decode(r.value or b"")[1] for r in records)
    changes = [e for e in decoded if isinstance(e, KeySuspended | KeyRestored)]
    assert [type(e).__name__ for e in changes] == ["KeySuspended", "KeyRestored"]
    assert [e.sequence for e in changes] == [1, 2]
    assert await fetchval(settings, "SELECT standing FROM key_lifecycle.customers") == "good"
    kinds = await fetchval(settings, "SELECT string_agg(kind, ',' ORDER BY id) FROM key_lifecycle.notifications")
    assert kinds == "suspended,restored"


async def test_the_gateway_middleware_lets_working_keys_through(settings: Settings) -> None:
    jobmeter = create_app(settings, consumers=["accounts", "keys"])
    upstream = FastAPI()

    @upstream.get("/v1/extract")
    async def extract(request: Request) -> dict[str, Any]:
        return {"billed_to": request.state.jobmeter_key["account_id"]}

    upstream.add_middleware(
        KeyCheckMiddleware, check_url="http://jobmeter.test/v1/keys/check", transport=httpx.ASGITransport(jobmeter)
    )
    async with client_for(jobmeter) as admin_client:
        await register(admin_client, "upco", "cus_UP")
        key = await new_key(admin_client, "upco")
        await until_status(admin_client, key["key"], 200)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(upstream), base_url="http://api.test") as api:
            ok = await api.get("/v1/extract", headers=bearer(key["key"]))
            assert ok.status_code == 200 and ok.json() == {"billed_to": "upco"}
            assert (await api.get("/v1/extract")).status_code == 401
            assert (await api.get("/v1/extract", headers=bearer("jm_live_nope"))).status_code == 401

            await admin_client.post(f"/v1/keys/{key['key_id']}/revoke", headers=ADMIN)
            started = time.monotonic()
            await eventually(lambda: api.get("/v1/extract", headers=bearer(key["key"])),
                             lambda r: r.status_code == 403, timeout=5)
            assert time.monotonic() - started < 2.0  # the check's own second plus the cache's


async def test_past_due_beyond_the_grace_period_suspends_on_the_clock(settings: Settings) -> None:
    from services.keys.grace_clock import publish_due_ticks

    app = create_app(settings, consumers=["accounts", "keys", "key-lifecycle"])
    async with client_for(app) as client:
        await register(client, "slow", "cus_SLOW")
        key = (await new_key(client, "slow"))["key"]
        eight_days_ago = int(time.time()) - 8 * 24 * 3600
        await signed_post(client, build_event("customer.subscription.updated", "cus_SLOW", status="past_due",
                                              created=eight_days_ago))
        await eventually(
            lambda: fetchval(settings, "SELECT standing FROM key_lifecycle.customers WHERE customer_id = 'cus_SLOW'"),
            lambda s: s == "past_due",
        )
        assert (await check(client, key)).status_code == 200  # no Stripe event says the grace is over

        res = app.state.runtime.res
        published: set[Any] = set()
        ticks = await publish_due_ticks(res, "key_lifecycle", already=published)
        assert [t.customer_id for t in ticks] == ["cus_SLOW"]
        assert await publish_due_ticks(res, "key_lifecycle", already=published) == []
        await until_status(client, key, 403)
        assert "past due for more than 7 day(s)" in (await check(client, key)).json()["reason"]
        assert await publish_due_ticks(res, "key_lifecycle") == []  # suspended: no longer past due
