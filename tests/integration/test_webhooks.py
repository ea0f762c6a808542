"""The Stripe webhook bridge on the real stack: verified, published once, acknowledged after Kafka has it."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from events.registry import REGISTRY
from events.stripe import StripeEventReceived
from events.topics import Topics
from jobmeter.settings import Settings
from services.http.app import create_app
from services.stripe_adapter.fixtures import build_event, encode_event
from services.stripe_adapter.webhooks import sign
from tests.integration.fake_meter_stripe_front import FakeMeterStripeFront
from tests.integration.helpers import ADMIN, client_for, eventually, fetchval, read_to_end, read_topic

pytestmark = pytest.mark.integration



def signed(body: bytes, secret: str = "whsec_dev", **kwargs: Any) -> dict[str, str]:  # noqa: S107
    return {"Stripe-Signature": sign(body, secret, **kwargs), "Content-Type": "application/json"}


def stripe_topic(settings: Settings) -> str:
    return Topics(settings.jobmeter_topic_prefix).name("stripe")


async def test_an_event_is_published_once_however_often_it_is_delivered(settings: Settings) -> None:
    async with client_for(create_app(settings, consumers=["accounts"])) as client:
        created = await client.post(
            "/v1/accounts", json={"account_id": "acme", "model": "subscription", "stripe_customer_id": "cus_ACME"},
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text
        body = encode_event(build_event("invoice.payment_failed", "cus_ACME", final=True))
        first = await client.post("/webhooks/stripe", content=body, headers=signed(body))
        assert first.status_code == 200, first.text
        assert first.json()["duplicate"] is False
        # Stripe retries later (a new signature), and sometimes delivers the same event twice at once.
        again = await client.post("/webhooks/stripe", content=body, headers=signed(body))
        racing = await asyncio.gather(
            *(client.post("/webhooks/stripe", content=body, headers=signed(body)) for _ in range(5))
        )
        assert again.json()["duplicate"] is True
        assert [r.status_code for r in racing] == [200] * 5

        other = encode_event(build_event("invoice.paid", "cus_NOBODY"))
        assert (await client.post("/webhooks/stripe", content=other, headers=signed(other))).status_code == 200

    records = await read_topic(settings, stripe_topic(settings), expect=3, timeout=5)
    assert len(records) == 2
    events = [REGISTRY.decode(r.value)[1] for r in records]
    assert all(isinstance(e, StripeEventReceived) for e in events)
    by_customer = {e.customer_id: e for e in events if isinstance(e, StripeEventReceived)}
    assert by_customer["cus_ACME"].account_id == "acme"
    assert by_customer["cus_NOBODY"].account_id is None
    assert {r.key for r in records} == {b"cus_ACME", b"cus_NOBODY"}
    assert await fetchval(settings, "SELECT deliveries FROM webhooks.log WHERE customer_id = 'cus_ACME'") == 7
    raw = await fetchval(settings, "SELECT body FROM webhooks.log WHERE customer_id = 'cus_ACME'")
    assert json.loads(raw)["type"] == "invoice.payment_failed"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("wrong secret", "bad signature"),
        ("stale", "tolerance"),
        ("tampered", "bad signature"),
        ("unsigned", "missing Stripe-Signature"),
    ],
)
async def test_bad_signatures_are_refused_and_nothing_is_published(
    settings: Settings, tamper: str, reason: str
) -> None:
    body = encode_event(build_event("invoice.payment_failed", "cus_X", final=True))
    headers = {
        "wrong secret": signed(body, "whsec_someone_else"),
        "stale": signed(body, timestamp=int(time.time()) - 600),
        "tampered": signed(body.replace(b"cus_X", b"cus_Y")),
        "unsigned": {},
    }[tamper]
    async with client_for(create_app(settings)) as client:
        response = await client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert await read_to_end(settings, "stripe") == []  # the bridge answers only after Kafka has what it sends
    assert await fetchval(settings, "SELECT count(*) FROM webhooks.log") == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
not_event_ids = json_values.filter(lambda v: not (isinstance(v, str) and v.startswith("evt_")))
not_timestamps = json_values.filter(lambda v: not isinstance(v, int) or isinstance(v, bool) or v < 0)
not_customers = json_values.filter(lambda v: v is not None and not (isinstance(v, str) and v.startswith("cus_")))
not_objects = json_values.filter(lambda v: not isinstance(v, dict))


@st.composite
def broken_events(draw: st.DrawFn) -> bytes:
    """A real-looking event with one thing that makes it not an event."""
    event = build_event(draw(st.sampled_from(["invoice.payment_failed", "invoice.paid"])), "cus_P")
    flaw = draw(st.sampled_from(["id", "created", "customer", "data", "object", "drop"]))
    if flaw == "id":
        event["id"] = draw(not_event_ids)
    elif flaw == "created":
        event["created"] = draw(not_timestamps)
    elif flaw == "customer":
        event["data"]["object"]["customer"] = draw(not_customers)
    elif flaw == "data":
        event["data"] = draw(st.one_of(not_objects, st.fixed_dictionaries({"object": not_objects})))
    elif flaw == "object":
        event["object"] = draw(json_values.filter(lambda v: v != "event"))
    else:
        del event[draw(st.sampled_from(["id", "type", "created", "data", "object"]))]
    return json.dumps(event).encode()


malformed = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    broken_events(),
)


async def test_malformed_bodies_never_500_and_never_publish(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    async with client_for(create_app(settings)) as client:

        def post(body: bytes, headers: dict[str, str]) -> httpx.Response:
            return asyncio.run_coroutine_threadsafe(
                client.post("/webhooks/stripe", content=body, headers=headers), loop
            ).result(timeout=30)

        @given(body=malformed, sign_it=st.booleans())
        @hsettings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(body: bytes, sign_it: bool) -> None:
            text = body.decode("utf-8", errors="replace")
            headers = {"Stripe-Signature": sign(text, "whsec_dev")} if sign_it else {}
            response = post(body, headers)
            assert response.status_code == 400, (response.status_code, response.text, body)
            assert response.json()["detail"]

        await asyncio.to_thread(check)
    assert await read_to_end(settings, "stripe") == []  # the bridge answers only after Kafka has what it sends
    assert await fetchval(settings, "SELECT count(*) FROM webhooks.log") == 0


async def test_nothing_is_claimed_when_kafka_does_not_take_the_event(settings: Settings) -> None:
    from events.publisher import Publisher

    app = create_app(settings.model_copy(update={"stripe_webhook_publish_timeout_seconds": 1.0}))
    async with client_for(app) as client:
        res = app.state.runtime.res
        body = encode_event(build_event("invoice.payment_failed", "cus_DOWN", final=True))
        live = res.publisher
        await live.stop()  # Kafka is out of reach for this producer: its sends never complete
        refused = await client.post("/webhooks/stripe", content=body, headers=signed(body))
        assert refused.status_code == 503, refused.text
        assert await fetchval(settings, "SELECT count(*) FROM webhooks.log") == 0

        res.publisher = Publisher(settings.kafka_bootstrap_servers, producer="test", topics=live.topics)
        await res.publisher.start()
        try:
            retried = await client.post("/webhooks/stripe", content=body, headers=signed(body))
        finally:
            await res.publisher.stop()
            res.publisher = live
    assert retried.status_code == 200 and retried.json()["duplicate"] is False
    assert len(await read_to_end(settings, "stripe")) == 1


async def test_the_log_forgets_events_past_their_days_and_a_late_redelivery_keeps_its_identity(
    settings: Settings,
) -> None:
    often = settings.model_copy(update={"jobmeter_retention_interval_seconds": 0.2})
    async with client_for(create_app(often)) as client:
        old = encode_event(build_event("invoice.paid", "cus_OLD"))
        new = encode_event(build_event("invoice.paid", "cus_NEW"))
        for body in (old, new):
            assert (await client.post("/webhooks/stripe", content=body, headers=signed(body))).status_code == 200
        await fetchval(settings, "UPDATE webhooks.log SET received_at = now() - interval '91 days' "
                                 "WHERE customer_id = 'cus_OLD'")
        await eventually(lambda: fetchval(settings, "SELECT array_agg(customer_id) FROM webhooks.log"),
                         lambda customers: customers == ["cus_NEW"])
        # Redelivered after that: bridged again, as the same event, which every fold keys its effect by.
        again = await client.post("/webhooks/stripe", content=old, headers=signed(old))
        assert again.json()["duplicate"] is False
    records = await read_topic(settings, stripe_topic(settings), expect=3)
    ids = [REGISTRY.decode(r.value)[0].event_id for r in records if r.key == b"cus_OLD"]
    assert len(ids) == 2 and ids[0] == ids[1]


def thin_error_report(event_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An event destination's thin notification and the full event Stripe serves for it (shaped as Stripe's SDK
    types `V1BillingMeterErrorReportTriggeredEvent`)."""
    thin = {"id": event_id, "object": "v2.core.event", "type": "v1.billing.meter.error_report_triggered",
            "livemode": False, "created": "2026-12-03T10:06:00.000Z", "context": None,
            "related_object": {"id": "mtr_test_61Q", "type": "billing.meter", "url": "/v1/billing/meters/mtr_test_61Q"}}
    full = {**thin, "reason": None, "data": {
        "developer_message_summary": "1 meter event could not be processed",
        "validation_start": "2026-12-03T10:00:00.000Z", "validation_end": "2026-12-03T10:05:00.000Z",
        "reason": {"error_count": 1, "error_types": [{
            "code": "meter_event_customer_not_found", "error_count": 1,
            "sample_errors": [{"error_message": "No customer cus_Gone", "request": {"identifier": "cus_Gone-1-60s-0"}}],
        }]},
    }}
    return thin, full


async def test_a_thin_event_is_published_with_the_body_fetched_from_stripe(settings: Settings) -> None:
    """Event destinations send only an id and a type; the bridge fetches the event and puts the whole of it on the
    bus. While Stripe cannot be reached the delivery is not acknowledged (503), so Stripe sends it again."""
    thin, full = thin_error_report("evt_test_65RThinMeter")
    with FakeMeterStripeFront(settings.stripe_api_base) as stripe_front:
        app = create_app(settings.model_copy(update={"stripe_api_base": stripe_front.url}))
        async with client_for(app) as client:
            body = json.dumps(thin).encode()
            unknown = await client.post("/webhooks/stripe", content=body, headers=signed(body))
            assert unknown.status_code == 503, unknown.text
            stripe_front.v2_events[thin["id"]] = full
            taken = await client.post("/webhooks/stripe", content=body, headers=signed(body))
            assert taken.status_code == 200, taken.text
            assert taken.json() == {"received": True, "id": thin["id"], "duplicate": False}
            unsigned = await client.post("/webhooks/stripe", content=body, headers={"Content-Type": "application/json"})
            assert unsigned.status_code == 400
    [record] = await read_topic(settings, stripe_topic(settings), expect=2, timeout=5)
    _, event = REGISTRY.decode(record.value)
    assert isinstance(event, StripeEventReceived)
    assert (event.stripe_event_id, event.type, event.customer_id) == (
        thin["id"], "v1.billing.meter.error_report_triggered", None)
    assert event.data_object["reason"]["error_types"][0]["code"] == "meter_event_customer_not_found"
    assert event.data_object["related_object"]["id"] == "mtr_test_61Q"
