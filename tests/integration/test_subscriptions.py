"""Subscriptions against stripe-mock and real Postgres: checkout, proration preview and change per behaviour, the
portal, the subscription projection fed by Stripe events, and GET /v1/accounts/{id}/billing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from events.codec import encode
from events.envelope import Envelope
from events.stripe import StripeEventReceived
from jobmeter.settings import Settings
from projections.migrate import migrate
from projections.records import RawRecord
from projections.subscriptions.projection import Subscriptions
from services.http.app import create_app
from services.stripe_adapter.client import make_client
from services.subscriptions.plans import (
    BEHAVIOURS,
    Behaviour,
    apply_change,
    checkout_session,
    current_subscription,
    portal_session,
    preview_change,
)
from tests.integration.helpers import ADMIN, client_for
from tests.integration.meter_harness import CUSTOMER, Harness, jobs, open_harness

pytestmark = pytest.mark.integration



@pytest.fixture
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    settings = settings.model_copy(update={
        "stripe_pro_price_id": "price_pro_m", "stripe_pro_annual_price_id": "price_pro_y",
        "stripe_metered_overage_price_id": "price_over", "jobmeter_plan_included_jobs": 5,
        "stripe_portal_return_url": "https://app.example/billing",
    })
    await migrate(settings.database_url, Subscriptions.schema, Subscriptions.migrations)
    async with open_harness(settings) as h:
        yield h


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
async def test_preview_then_change_with_each_proration_behaviour(harness: Harness, behaviour: Behaviour) -> None:
    h = harness
    client = make_client(h.settings, api_base=h.front.url)
    current = current_subscription(client, "sub_123")
    when = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

    preview = preview_change(client, current, "price_pro_y", behaviour, when)
    assert (preview.behaviour, preview.proration_date, preview.currency) == (behaviour, int(when.timestamp()), "usd")
    assert isinstance(preview.amount_due, int) and isinstance(preview.proration_amount, int)
    apply_change(client, current, "price_pro_y", behaviour, when)

    asked, changed = [r for r in h.front.seen if r.method == "POST"]
    assert asked.path == "/v1/invoices/create_preview"
    assert asked.form["subscription"] == "sub_123"
    assert asked.form["subscription_details[proration_behavior]"] == behaviour
    assert asked.form["subscription_details[items][0][id]"] == current.base_item_id
    assert asked.form["subscription_details[items][0][price]"] == "price_pro_y"
    assert changed.path == "/v1/subscriptions/sub_123"
    assert changed.form["proration_behavior"] == behaviour
    # what was previewed is what is applied: the same proration date, the same item change
    assert changed.form["proration_date"] == asked.form["subscription_details[proration_date]"]
    assert changed.form["items[0][price]"] == "price_pro_y"
    assert changed.idempotency_key == f"jobmeter-plan-change-sub_123-price_pro_y-{behaviour}-{int(when.timestamp())}"


async def test_checkout_and_portal(harness: Harness) -> None:
    h = harness
    client = make_client(h.settings, api_base=h.front.url)
    session_id, url = checkout_session(client, h.settings, "acme", CUSTOMER, "pro_monthly")
    assert session_id.startswith("cs_") and url
    portal = portal_session(client, h.settings, CUSTOMER)
    assert portal.startswith("https://")
    checkout, opened = [r for r in h.front.seen if r.method == "POST"]
    assert checkout.form["line_items[0][price]"] == "price_pro_m"
    assert checkout.form["line_items[0][quantity]"] == "1"
    assert checkout.form["line_items[1][price]"] == "price_over"
    assert "line_items[1][quantity]" not in checkout.form  # metered: no quantity
    assert checkout.form["client_reference_id"] == "acme"
    assert opened.form == {"customer": CUSTOMER, "return_url": "https://app.example/billing"}


def stripe_event(event_id: str, kind: str, created: datetime, *, start: datetime = datetime(2026, 11, 1, tzinfo=UTC),
                 **sub: Any) -> StripeEventReceived:
    obj = {
        "id": "sub_acme", "object": "subscription", "customer": CUSTOMER, "status": "active",
        "items": {"data": [
            {"id": "si_base", "price": {"id": sub.pop("price", "price_pro_m"),
                                        "recurring": {"interval": "month", "usage_type": "licensed"}},
             "current_period_start": int(start.timestamp()),
             "current_period_end": int((start + timedelta(days=30)).timestamp())},
            {"id": "si_over", "price": {"id": "price_over", "recurring": {"interval": "month",
                                                                         "usage_type": "metered"}}},
        ]},
        **sub,
    }
    return StripeEventReceived(stripe_event_id=event_id, type=kind, created=created, customer_id=CUSTOMER,
                               data_object=obj)


async def test_subscription_projection_and_the_billing_endpoint(harness: Harness) -> None:
    h = harness
    t = datetime(2026, 11, 1, 9, tzinfo=UTC)
    fold = h.folder(Subscriptions())

    async def deliver(*events: StripeEventReceived) -> None:
        await fold.fold([RawRecord("stripe", 0, next(h.offsets), 0, None, encode(Envelope.wrap(e, producer="test")))
                         for e in events])

    await deliver(stripe_event("evt_1", "customer.subscription.created", t, status="incomplete"))
    await deliver(stripe_event("evt_3", "customer.subscription.updated", t + timedelta(minutes=2), status="active"))
    await deliver(stripe_event("evt_2", "customer.subscription.updated", t + timedelta(minutes=1),
                               status="past_due"))  # older, delivered late: ignored
    row = await h.pool.fetchrow("SELECT * FROM subscriptions.subscriptions")
    assert (row["status"], row["base_price_id"], row["interval"], row["last_event_id"]) == (
        "active", "price_pro_m", "month", "evt_3")

    in_period = datetime(2026, 11, 10, 10, tzinfo=UTC)
    await h.publish(*jobs(7, in_period), *jobs(2, datetime(2026, 10, 30, tzinfo=UTC), prefix="before"))
    app = create_app(h.settings, consumers=[])
    async with client_for(app) as http:
        answer = await http.get("/v1/accounts/acme/billing", headers=ADMIN)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["included_jobs"], body["used_jobs"], body["overage_jobs"]) == (5, 7, 2)
        assert body["overage_charge"] == {"amount": 1, "currency": "usd"}  # 2 jobs x 0.5 cent
        assert body["period"]["start"] == "2026-11-01T00:00:00+00:00"
        assert body["reported_to_stripe"] == 0  # recorded, not yet sent

        assert (await http.get("/v1/accounts/nobody/billing", headers=ADMIN)).status_code == 404
        assert (await http.get("/v1/accounts/acme/billing")).status_code == 401

        await deliver(stripe_event("evt_4", "customer.subscription.deleted", t + timedelta(days=3)))
        canceled = (await http.get("/v1/accounts/acme/billing", headers=ADMIN)).json()
        assert (canceled["status"], canceled["included_jobs"], canceled["overage_jobs"]) == ("canceled", 0, 7)


async def test_the_forecast_runs_over_the_subscription_period_and_prices_its_overage(harness: Harness) -> None:
    """A live subscription's period, not the calendar month: its included jobs, the overage the forecast leaves
    past them and what that costs at the metered price."""
    h = harness
    now = datetime.now(UTC)
    start = (now - timedelta(days=10)).replace(minute=30, second=0, microsecond=0)  # Stripe periods start mid-hour
    fold = h.folder(Subscriptions())
    created = now - timedelta(days=10)
    await fold.fold([RawRecord("stripe", 0, next(h.offsets), 0, None, encode(Envelope.wrap(
        stripe_event("evt_f1", "customer.subscription.created", created, start=start), producer="test")))])
    # 40 jobs a day for the ten days so far; two on the day before the period (not in it).
    await h.publish(*[job for day in range(1, 11)
                      for job in jobs(40, start + timedelta(days=day - 1, hours=1), prefix=f"d{day}")],
                    *jobs(2, start - timedelta(days=1), prefix="before"))
    async with client_for(create_app(h.settings, consumers=[])) as http:
        answer = await http.get("/v1/accounts/acme/forecast", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["period"] == {"start": start.isoformat(), "end": (start + timedelta(days=30)).isoformat()}
    assert (body["billing_model"], body["jobs_to_date"], body["included_jobs"]) == ("subscription", 400, 5)
    assert body["forecast_jobs"] > 400
    assert body["forecast_overage_jobs"] == body["forecast_jobs"] - 5
    # 0.5 cent a job past the included five, rounded half up to whole cents.
    expected = (Decimal(body["forecast_overage_jobs"]) / 2).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert body["forecast_charge"] == {"amount": int(expected), "currency": "usd"}


async def test_billing_sessions_over_http(harness: Harness) -> None:
    h = harness
    app = create_app(h.settings.model_copy(update={"stripe_api_base": h.front.url}), consumers=[])
    async with client_for(app) as http:
        started = await http.post("/v1/accounts/acme/checkout", json={"plan": "pro_annual"}, headers=ADMIN)
        assert started.status_code == 200, started.text
        assert started.json()["url"].startswith("https://")
        assert (await http.post("/v1/accounts/nobody/checkout", json={}, headers=ADMIN)).status_code == 404
        assert (await http.post("/v1/accounts/acme/portal", headers=ADMIN)).json()["url"].startswith("https://")

        previewed = await http.post("/v1/subscriptions/sub_123/preview",
                                    json={"to": "pro_annual", "behaviour": "always_invoice"}, headers=ADMIN)
        assert previewed.status_code == 200, previewed.text
        when = previewed.json()["proration_date"]
        changed = await http.post("/v1/subscriptions/sub_123/change",
                                  json={"to": "pro_annual", "behaviour": "always_invoice", "proration_date": when},
                                  headers=ADMIN)
        assert changed.status_code == 200, changed.text
        update = [r for r in h.front.seen if r.method == "POST" and r.path == "/v1/subscriptions/sub_123"][-1]
        assert (update.form["proration_date"], update.form["proration_behavior"]) == (str(when), "always_invoice")

        no_date = await http.post("/v1/subscriptions/sub_123/change", json={"to": "pro_annual"}, headers=ADMIN)
        assert no_date.status_code == 422
        bad = await http.post("/v1/subscriptions/sub_123/preview", json={"to": "pro_annual", "behaviour": "maybe"},
                              headers=ADMIN)
        assert bad.status_code == 422
        h.front.play(["500"])
        down = await http.post("/v1/subscriptions/sub_123/preview", json={"to": "pro_annual"}, headers=ADMIN)
        assert down.status_code == 503
