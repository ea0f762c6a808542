"""Stripe-Signature verification and event parsing: what the bridge accepts and why it refuses the rest."""

from __future__ import annotations

import time

import pytest

from services.stripe_adapter.fixtures import build_event, encode_event
from services.stripe_adapter.webhooks import WebhookRefused, parse, sign, verify

SECRET = "whsec_test_secret"
BODY = encode_event(build_event("invoice.payment_failed", "cus_ABC", final=True))


def test_a_signature_we_made_is_accepted() -> None:
    verify(BODY, sign(BODY, SECRET), SECRET, 300)


def test_our_signature_matches_stripes_own() -> None:
    import stripe

    t = int(time.time())
    assert sign(BODY, SECRET, timestamp=t) == stripe.WebhookSignature.generate_signature_header(
        BODY.decode(), SECRET, timestamp=t
    )


@pytest.mark.parametrize(
    ("body", "header", "reason"),
    [
        (BODY, sign(BODY, "whsec_other"), "bad signature"),  # wrong secret
        (BODY, sign(BODY, SECRET, timestamp=int(time.time()) - 301), "tolerance"),  # stale / replayed
        (BODY.replace(b"cus_ABC", b"cus_XYZ"), sign(BODY, SECRET), "bad signature"),  # tampered body
        (BODY, None, "missing Stripe-Signature"),
        (BODY, "", "missing Stripe-Signature"),
        (BODY, "garbage", "bad signature"),
        (BODY, f"t={int(time.time())}", "bad signature"),  # no v1
        (BODY, "t=abc,v1=00", "bad signature"),
        (b"\xff\xfe", sign("x", SECRET), "UTF-8"),
        (BODY, sign(BODY, SECRET, timestamp=int(time.time()) + 3600), "in the future"),
    ],
)
def test_refused_with_a_reason(body: bytes, header: str | None, reason: str) -> None:
    with pytest.raises(WebhookRefused, match=reason):
        verify(body, header, SECRET, 300)


def test_an_unset_secret_verifies_nothing() -> None:
    # HMAC with an empty key is something anyone can compute: it must not open the bridge.
    with pytest.raises(WebhookRefused, match="STRIPE_WEBHOOK_SECRET is unset"):
        verify(BODY, sign(BODY, ""), "", 300)


def test_one_of_several_signatures_may_match() -> None:
    # Stripe sends several v1 signatures while a secret is being rolled.
    t = int(time.time())
    header = sign(BODY, "whsec_old", timestamp=t) + "," + sign(BODY, SECRET, timestamp=t).split(",")[1]
    verify(BODY, header, SECRET, 300)


def test_parse_takes_the_customer_from_the_object() -> None:
    event = parse(BODY)
    assert event.customer_id == "cus_ABC"
    assert event.type == "invoice.payment_failed"
    assert event.created.tzinfo is not None
    assert event.partition_key() == "cus_ABC"
    assert event.data_object["next_payment_attempt"] is None
    assert parse(BODY).natural_id() == event.natural_id()


def test_a_customer_object_is_its_own_customer() -> None:
    raw = build_event("invoice.paid", "cus_A")
    raw["type"], raw["data"]["object"] = "customer.updated", {"id": "cus_SELF", "object": "customer"}
    assert parse(encode_event(raw)).customer_id == "cus_SELF"


def test_without_a_customer_the_key_is_the_event_id() -> None:
    raw = build_event("invoice.paid", "cus_A")
    del raw["data"]["object"]["customer"]
    event = parse(encode_event(raw))
    assert event.customer_id is None
    assert event.partition_key() == raw["id"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{nope", "malformed JSON"),
        (b"[]", "not a Stripe event"),
        (b'{"object": "event"}', "data.object"),
        (b'{"object": "event", "data": {"object": {}}, "created": "x"}', "created"),
        (b'{"object": "event", "data": {"object": {}}, "created": 1, "id": "x", "type": "a"}', "stripe_event_id"),
        (b'{"object": "event", "data": {"object": {"customer": 5}}, "created": 1, "id": "evt_1", "type": "a"}',
         "customer_id"),
    ],
)
def test_parse_refuses_what_is_not_an_event(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookRefused, match=reason):
        parse(body)
