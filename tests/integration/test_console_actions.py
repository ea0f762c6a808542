"""The console's actions and reads on the real stack: rebuilding a projection, the live numbers, Checkout against
an unreachable Stripe, and logging out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobmeter.settings import Settings
from services.http.app import create_app
from services.platform.serving import free_port
from services.stripe_adapter.fixtures import build_event, encode_event
from services.stripe_adapter.webhooks import sign
from tests.integration.helpers import ADMIN, INGEST, applied_to_end, client_for, eventually, job, register
from tests.integration.test_console_auth import ORIGIN, csrf_of, log_in

pytestmark = pytest.mark.integration



async def test_rebuild_a_projection_from_the_console(settings: Settings) -> None:
    async with client_for(create_app(settings, consumers=["accounts", "ledger"])) as client:
        await register(client, "acme", "subscription")
        ingested = await client.post("/v1/jobs/completed", json=[job("acme", f"j-{n}") for n in range(5)],
                                     headers=INGEST)
        assert ingested.status_code == 202
        await log_in(client)
        token = csrf_of((await client.get("/console/projections")).text)

        async def live() -> dict[str, object]:
            return dict((await client.get("/console/api/live")).json())

        numbers = await eventually(live, lambda d: d["jobs_total"] == 5)
        assert numbers["accounts"] == 1
        # Records, not jobs: ingest wrote the request's five jobs of one account as one record.
        assert isinstance(numbers["positions"], dict) and numbers["positions"]["ledger"] == 1

        started = await client.post("/console/projections/usage-ledger/rebuild", data={"csrf": token}, headers=ORIGIN)
        assert started.status_code == 303
        assert started.headers["location"] == "/console/projections?notice=rebuild-started"

        async def state() -> str:
            return str((await live())["rebuilds"]["ledger"])  # type: ignore[index]

        assert await eventually(state, lambda s: s != "running", timeout=60) == "swapped"
        page = (await client.get("/console/projections")).text
        assert "equal to live, swapped in" in page
        assert (await live())["jobs_total"] == 5  # the swapped-in ledger counts the same jobs

        unknown = await client.post("/console/projections/nope/rebuild", data={"csrf": token}, headers=ORIGIN)
        assert unknown.status_code == 404
        assert "There is no projection" in unknown.text


async def test_an_unreachable_stripe_is_a_clear_message(settings: Settings) -> None:
    offline = settings.model_copy(update={"stripe_api_base": f"http://127.0.0.1:{free_port()}"})
    async with client_for(create_app(offline, consumers=["accounts"])) as client:
        await register(client, "payco", "payg")
        await register(client, "acme", "subscription")
        await log_in(client)
        page = (await client.get("/console/accounts/payco")).text
        assert 'id="amount_minor"' in page
        token = csrf_of(page)
        topup = await client.post("/console/accounts/payco/topup", data={"csrf": token, "amount_minor": "2000"},
                                  headers=ORIGIN)
        assert topup.status_code == 503
        assert "Stripe is unavailable" in topup.text
        assert "Traceback" not in topup.text

        bad_amount = await client.post("/console/accounts/payco/topup", data={"csrf": token, "amount_minor": "-5"},
                                       headers=ORIGIN)
        assert bad_amount.status_code == 400
        # The subscriptions area refuses without its prices configured, and says which setting is missing.
        checkout = await client.post("/console/accounts/acme/checkout", data={"csrf": token, "plan": "pro_monthly"},
                                     headers=ORIGIN)
        assert checkout.status_code == 400
        assert "Cannot start Checkout" in checkout.text and "is not set" in checkout.text
        listing = (await client.get("/console/accounts")).text
        assert "no subscription" in listing and "balance 0" in listing


async def test_log_out_ends_the_session(settings: Settings) -> None:
    async with client_for(create_app(settings)) as client:
        await log_in(client)
        page = await client.get("/console/accounts")
        assert page.status_code == 200
        out = await client.post("/console/logout", data={"csrf": csrf_of(page.text)}, headers=ORIGIN)
        assert out.status_code == 303
        assert (await client.get("/console/accounts")).status_code == 303


async def test_a_subscribers_period_shows_once_stripe_says_so(settings: Settings) -> None:
    app = create_app(settings, consumers=["accounts", "ledger", "subscriptions"])
    async with client_for(app) as client:
        await register(client, "acme", "subscription")
        await log_in(client)
        assert "No subscription on record" in (await client.get("/console/accounts/acme")).text
        event = encode_event(build_event("customer.subscription.updated", "cus_acme", status="active"))
        delivered = await client.post("/webhooks/stripe", content=event, headers={
            "Stripe-Signature": sign(event, settings.stripe_webhook_secret.get_secret_value()),
            "Content-Type": "application/json"})
        assert delivered.status_code == 200, delivered.text

        async def page() -> str:
            return (await client.get("/console/accounts/acme")).text

        shown = await eventually(page, lambda html: 'id="billing"' in html)
        assert "<dt>Status</dt><dd>active" in shown
        listing = (await client.get("/console/accounts")).text
        assert "· active" in listing


async def test_the_account_page_draws_the_period_with_its_forecast_cap_and_alerts(settings: Settings) -> None:
    app = create_app(settings, consumers=["accounts", "ledger", "caps"])
    async with client_for(app) as client:
        await register(client, "acme", "payg")
        jobs = [{"account_id": "acme", "api": "extract", "job_id": f"j{i}", "channel": "direct", "mode": "sync",
                 "completed_at": datetime.now(UTC).isoformat()} for i in range(8)]
        capped = await client.put("/v1/accounts/acme/caps", json={"jobs": 10, "hard": False}, headers=ADMIN)
        assert capped.status_code in (200, 202), capped.text
        await applied_to_end(settings, "caps", "accounts")
        assert (await client.post("/v1/jobs/completed", json=jobs, headers=INGEST)).status_code == 202
        await applied_to_end(settings, "ledger", "jobs")
        await applied_to_end(settings, "caps", "jobs")
        await log_in(client)
        page = (await client.get("/console/accounts/acme")).text
        listing = (await client.get("/console/accounts")).text
    assert 'id="overview-chart"' in listing and "acme: 8 jobs so far" in listing and "cap 10" in listing
    assert 'id="period-chart"' in page and 'class="to-date"' in page and "cap: 10" in page
    assert "<dt>Jobs so far</dt><dd>8</dd>" in page
    assert "<td>cap:*:80</td>" in page  # the 80 % alert of the cap, raised once


async def test_account_ids_with_a_slash_have_pages_and_actions(settings: Settings) -> None:
    async with client_for(create_app(settings, consumers=["accounts"])) as client:
        created = await client.post("/v1/accounts", json={"account_id": "team/acme", "model": "subscription",
                                                           "stripe_customer_id": "cus_teamacme"}, headers=ADMIN)
        assert created.status_code in (201, 202), created.text
        await log_in(client)
        listing = (await client.get("/console/accounts")).text
        assert 'href="/console/accounts/team/acme"' in listing
        page = await client.get("/console/accounts/team/acme")
        assert page.status_code == 200 and "<h1>Account team/acme</h1>" in page.text
        assert (await client.get("/console/api/accounts/team%2Facme")).json()["key_state"] == "no keys"
        done = await client.post("/console/accounts/team/acme/simulate-payment-failure",
                                 data={"csrf": csrf_of(page.text)}, headers=ORIGIN)
        assert done.status_code == 303
        assert done.headers["location"] == "/console/accounts/team%2Facme?notice=failure-sent"
        assert (await client.get(done.headers["location"])).status_code == 200
