"""No simulated Stripe events against a live Stripe account: the console's buttons and `jobmeter simulate webhook`
refuse with a live STRIPE_SECRET_KEY, and such a deployment's bridge takes live events only. With a test key,
simulated events go through and the webhook log lists them as simulated."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from jobmeter.settings import Settings
from services.console import reads
from services.devtools.sandbox import service_env
from services.http.app import create_app
from services.platform.serving import serving
from services.stripe_adapter.fixtures import build_event, encode_event
from services.stripe_adapter.simulation import CLI_PREFIX, CONSOLE_PREFIX, is_live_key
from services.stripe_adapter.webhooks import sign
from tests.integration.helpers import ADMIN, client_for, fetchval, read_to_end, register
from tests.integration.test_console_auth import ADMIN_TOKEN, ORIGIN, csrf_of, log_in

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LIVE_KEY = "sk_live_51LiveAccountKeyForTests"
SIMULATIONS = ["simulate-payment-failure", "simulate-payment-recovery"]


def live(settings: Settings, key: str = LIVE_KEY) -> Settings:
    return settings.model_copy(update={"stripe_secret_key": SecretStr(key)})


def signed(settings: Settings, body: bytes) -> dict[str, str]:
    return {"Stripe-Signature": sign(body, settings.stripe_webhook_secret.get_secret_value()),
            "Content-Type": "application/json"}


async def nothing_received(settings: Settings) -> None:
    """Neither the webhook log nor the `stripe` topic holds an event."""
    assert await fetchval(settings, "SELECT count(*) FROM webhooks.log") == 0
    assert await read_to_end(settings, "stripe") == []


async def simulate_cli(settings: Settings, url: str, *, stripe_key: str) -> tuple[int, str, str]:
    env = {**service_env(settings), "STRIPE_SECRET_KEY": stripe_key}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "simulate", "webhook", "invoice.payment_failed",
        "--customer", "cus_acme", "--final", "--url", f"{url}/webhooks/stripe",
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(("key", "live_account"), [
    ("sk_live_abc", True), ("rk_live_abc", True), ("sk_test_abc", False), ("rk_test_abc", False),
    ("pk_live_abc", False), ("", False), ("xsk_live_abc", False),
])
def test_live_keys_are_told_apart(key: str, live_account: bool) -> None:
    assert is_live_key(key) is live_account


@pytest.mark.parametrize("key", [LIVE_KEY, "rk_live_51RestrictedLiveKey"])
async def test_the_console_refuses_to_simulate_with_a_live_key(settings: Settings, key: str) -> None:
    async with client_for(create_app(live(settings, key), consumers=["accounts"])) as client:
        await register(client, "acme", "subscription")
        await log_in(client)
        page = (await client.get("/console/accounts/acme")).text
        assert "STRIPE_SECRET_KEY is a live key" in page and "simulate-payment" not in page  # no buttons offered
        token = csrf_of(page)
        for action in SIMULATIONS:
            refused = await client.post(f"/console/accounts/acme/{action}", data={"csrf": token}, headers=ORIGIN)
            assert refused.status_code == 409, refused.text
            assert "Simulation is off" in refused.text and "STRIPE_SECRET_KEY is a live key" in refused.text
    await nothing_received(settings)


async def test_the_cli_refuses_to_simulate_with_a_live_key_and_posts_nothing(settings: Settings) -> None:
    # The bridge here has a test key: it would take the CLI's event, so an empty log means nothing was posted.
    async with serving(create_app(settings, consumers=["accounts"])) as url:
        code, out, err = await simulate_cli(settings, url, stripe_key=LIVE_KEY)
    assert code == 1
    assert "Simulation is off: STRIPE_SECRET_KEY is a live key" in err and out == ""
    await nothing_received(settings)


async def test_a_live_bridge_takes_live_events_only(settings: Settings) -> None:
    async with client_for(create_app(live(settings), consumers=["accounts"])) as client:
        await register(client, "acme", "subscription")
        test_mode = build_event("invoice.payment_failed", "cus_acme", final=True)
        unmarked = {k: v for k, v in build_event("invoice.payment_failed", "cus_acme").items() if k != "livemode"}
        for event in (test_mode, unmarked):
            body = encode_event(event)
            refused = await client.post("/webhooks/stripe", content=body, headers=signed(settings, body))
            assert refused.status_code == 400
            assert "livemode false" in refused.json()["detail"] and "live key" in refused.json()["detail"]
        await nothing_received(settings)

        real = build_event("invoice.payment_failed", "cus_acme", final=True)
        real["livemode"] = real["data"]["object"]["livemode"] = True
        body = encode_event(real)
        taken = await client.post("/webhooks/stripe", content=body, headers=signed(settings, body))
        assert taken.status_code == 200, taken.text
    assert await fetchval(settings, "SELECT array_agg(stripe_event_id) FROM webhooks.log") == [real["id"]]
    assert len(await read_to_end(settings, "stripe")) == 1


async def test_simulated_events_are_listed_as_simulated(settings: Settings) -> None:
    async with serving(create_app(settings, consumers=["accounts"])) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            created = await client.post("/v1/accounts", json={"account_id": "acme", "model": "subscription",
                                                               "stripe_customer_id": "cus_acme"}, headers=ADMIN)
            assert created.status_code == 201, created.text
            code, out, err = await simulate_cli(settings, url, stripe_key="sk_test_123")
            assert code == 0, err
            cli_id = json.loads(out)["id"]
            origin = {"Origin": url}
            assert (await client.post("/console/login", data={"token": ADMIN_TOKEN}, headers=origin)).is_redirect
            token = csrf_of((await client.get("/console/accounts/acme")).text)
            sent = await client.post("/console/accounts/acme/simulate-payment-recovery", data={"csrf": token},
                                     headers=origin)
            assert sent.status_code == 303, sent.text
            # One event as Stripe itself would send it (a Stripe id), for contrast.
            stripes = encode_event(build_event("customer.subscription.updated", "cus_acme", status="active"))
            assert (await client.post("/webhooks/stripe", content=stripes,
                                      headers=signed(settings, stripes))).status_code == 200
            listed: list[dict[str, Any]] = (await client.get("/console/api/live")).json()["webhooks"]

    simulated = {h["type"]: (h["id"], h["simulated"]) for h in listed}
    assert cli_id.startswith(CLI_PREFIX) and simulated["invoice.payment_failed"] == (cli_id, True)
    console_id, marked = simulated["invoice.paid"]
    assert console_id.startswith(CONSOLE_PREFIX) and marked is True
    assert simulated["customer.subscription.updated"][1] is False
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch("SELECT stripe_event_id, livemode, body FROM webhooks.log")
        account_rows = (await reads.webhook_log(conn, account_id="acme")).rows
    finally:
        await conn.close()
    simulated_rows = [r for r in rows if r["stripe_event_id"] in (cli_id, console_id)]
    assert len(simulated_rows) == 2
    assert all(r["livemode"] is False and json.loads(r["body"])["livemode"] is False for r in simulated_rows)
    assert {r["stripe_event_id"] for r in account_rows if r["simulated"]} == {cli_id, console_id}
