"""The Stripe webhook bridge: verify a delivery, put its event on the `stripe` topic once, keep it in the log.

The log row that marks an event id as received is written only *after* Kafka acknowledged the event, inside a
transaction that holds a per-event advisory lock: a failed publish claims nothing (Stripe retries, and the
retry is published), and two racing copies of one delivery publish it once between them. If the log write
fails after the publish, the retry publishes it again under the same envelope event id (natural, from the
Stripe id): readers must fold a repeat as nothing, as the key lifecycle does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from pydantic import ValidationError

from events.codec import describe
from events.stripe import StripeEventReceived
from projections.accounts.queries import account_of_customer
from projections.db import transaction
from projections.payg.queries import customer_of_payment
from services.platform.resources import Resources
from services.stripe_adapter import store
from services.stripe_adapter.client import make_client
from services.stripe_adapter.simulation import is_live_key

SIGNATURE_SCHEME = "v1"


class WebhookRefused(ValueError):
    """A delivery we will not accept; the reason goes back to the sender with a 400."""


class StripeUnreachable(RuntimeError):
    """A thin event's full body could not be fetched from Stripe: not acknowledged, so Stripe delivers again."""


@dataclass(frozen=True)
class ThinEvent:
    """An event destination's notification (`"object": "v2.core.event"`): only the id and type; the body, with its
    `data`, is fetched from Stripe (`GET /v2/core/events/{id}`), as Stripe asks, so it is the versioned one."""

    id: str
    type: str


@dataclass(frozen=True)
class Receipt:
    stripe_event_id: str
    duplicate: bool


def sign(body: bytes | str, secret: str, *, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe would send: `t=<unix>,v1=HMAC-SHA256(secret, "<t>.<body>")`."""
    text = body.decode() if isinstance(body, bytes) else body
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{text}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},{SIGNATURE_SCHEME}={mac}"


def verify(body: bytes, header: str | None, secret: str, tolerance_seconds: int) -> None:
    """Raise WebhookRefused unless `header` signs `body` with `secret` within the tolerance (constant-time)."""
    if not header:
        raise WebhookRefused("missing Stripe-Signature header")
    if not secret:  # anyone can sign with an empty key: an unset secret verifies nothing
        raise WebhookRefused("STRIPE_WEBHOOK_SECRET is unset: this deployment cannot verify Stripe's signature")
    try:
        stripe.WebhookSignature.verify_header(body, header, secret, tolerance_seconds)
    except stripe.SignatureVerificationError as error:
        raise WebhookRefused(f"bad signature: {error.user_message or error}") from None
    except UnicodeDecodeError:
        raise WebhookRefused("body is not UTF-8") from None
    # Stripe's check only looks back; a timestamp far ahead is as suspect as a stale one.
    # Read the timestamp as Stripe's own check just did (it raised otherwise).
    signed_at = int([i.split("=", 2)[1] for i in header.split(",") if i.split("=", 2)[0] == "t"][0])
    if signed_at > time.time() + tolerance_seconds:
        raise WebhookRefused(f"bad signature: timestamp {signed_at} is in the future")


def parse(body: bytes) -> StripeEventReceived:
    """A snapshot event's verified body as our event (without the account, resolved later); WebhookRefused if it
    is not one."""
    parsed = parse_delivery(body)
    if isinstance(parsed, ThinEvent):
        raise WebhookRefused(f"{parsed.id} is a thin event: its body is fetched from Stripe (`receive`)")
    return parsed


def parse_delivery(body: bytes) -> StripeEventReceived | ThinEvent:
    """The verified body as our event (without the account, resolved later), or a thin event to fetch;
    WebhookRefused if it is neither."""
    try:
        raw: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WebhookRefused(f"malformed JSON: {error}") from None
    except RecursionError:
        raise WebhookRefused("malformed JSON: nested too deeply") from None
    if isinstance(raw, dict) and raw.get("object") == "v2.core.event":
        return thin_event(raw)
    if not isinstance(raw, dict) or raw.get("object") != "event":
        raise WebhookRefused("not a Stripe event (expected an object with \"object\": \"event\" or \"v2.core.event\")")
    return snapshot_event(raw)


def snapshot_event(raw: dict[str, Any]) -> StripeEventReceived:
    """A snapshot event (`"object": "event"`) as ours."""
    data = raw.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise WebhookRefused("data.object: missing or not an object")
    created = raw.get("created")
    if not isinstance(created, int) or isinstance(created, bool) or not 0 <= created < 2**37:
        raise WebhookRefused("created: expected a unix timestamp")
    try:
        return StripeEventReceived(
            stripe_event_id=raw.get("id"),
            type=raw.get("type"),
            created=datetime.fromtimestamp(created, UTC),
            customer_id=customer_of(obj),
            livemode=raw.get("livemode", False),
            data_object=obj,
        )
    except ValidationError as error:
        raise WebhookRefused(f"invalid event: {describe(error)}") from None


def thin_event(raw: dict[str, Any]) -> ThinEvent:
    event_id, kind = raw.get("id"), raw.get("type")
    if not isinstance(event_id, str) or not event_id.startswith("evt_") or len(event_id) > 255:
        raise WebhookRefused("id: expected a Stripe event id (evt_...)")
    if not isinstance(kind, str) or not kind:
        raise WebhookRefused("type: missing")
    return ThinEvent(event_id, kind)


def from_v2(full: dict[str, Any]) -> StripeEventReceived:
    """A fetched v2 event as ours: its `data` (with the related object beside it) is what the folds read."""
    created = full.get("created")
    try:
        at = datetime.fromisoformat(created.replace("Z", "+00:00")) if isinstance(created, str) else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise StripeUnreachable(f"Stripe's event {full.get('id')} has no readable created time: {created!r}")
    found = full.get("data")
    data: dict[str, Any] = found if isinstance(found, dict) else {}
    related = full.get("related_object")
    try:
        return StripeEventReceived(
            stripe_event_id=full.get("id"), type=full.get("type"), created=at.astimezone(UTC),
            livemode=bool(full.get("livemode", False)),
            data_object={**data, **({"related_object": related} if isinstance(related, dict) else {})},
        )
    except ValidationError as error:
        raise StripeUnreachable(f"Stripe's event {full.get('id')} is not one we can read: {describe(error)}") from None


async def fetch_thin(res: Resources, thin: ThinEvent) -> StripeEventReceived:
    try:
        answer = await make_client(res.settings).raw_request_async("get", f"/v2/core/events/{thin.id}")
    except stripe.StripeError as error:
        raise StripeUnreachable(f"fetching {thin.id}: {error.user_message or error}") from None
    return from_v2(answer.data)


def customer_of(obj: dict[str, Any]) -> Any:
    """The customer an object belongs to: its `customer` (an id, or an expanded object), or itself."""
    if obj.get("object") == "customer":
        return obj.get("id")
    customer = obj.get("customer")
    if isinstance(customer, dict):
        if "id" not in customer:
            raise WebhookRefused("data.object.customer: an expanded customer without an id")
        return customer["id"]
    return customer


def payment_intent_of(obj: dict[str, Any]) -> str | None:
    paid = obj.get("payment_intent")
    if isinstance(paid, dict):
        paid = paid.get("id")
    return paid if isinstance(paid, str) and paid else None


async def receive(res: Resources, body: bytes, header: str | None) -> Receipt:
    """Verify, parse, publish once, log. Returns after Kafka has the event (or had it before)."""
    settings = res.settings
    verify(body, header, settings.stripe_webhook_secret.get_secret_value(), settings.stripe_webhook_tolerance_seconds)
    parsed = parse_delivery(body)
    event = await fetch_thin(res, parsed) if isinstance(parsed, ThinEvent) else parsed
    if not event.livemode and is_live_key(settings.stripe_secret_key.get_secret_value()):
        # Stripe sends a live account's endpoints live events only: this one was simulated (or sent to the
        # wrong deployment), and dunning must not act on it against real customers.
        raise WebhookRefused(
            f"test-mode event {event.stripe_event_id} (livemode false) refused: STRIPE_SECRET_KEY is a live key, "
            "so this endpoint takes live events only"
        )
    async with res.connections() as db, transaction(res.pool) as conn:
        db.share(res.pool, conn)  # the payments and the registry are read where they live (beside the log or not)
        await store.lock_event(conn, event.stripe_event_id)
        if await store.count_redelivery(conn, event.stripe_event_id):
            return Receipt(event.stripe_event_id, duplicate=True)
        if event.customer_id is None and (paid := payment_intent_of(event.data_object)) is not None:
            # A dispute names no customer. Take the one its payment credited, so it travels in that customer's
            # order on the log, after the credit it reverses: live, and in every replay.
            customer = await customer_of_payment(await db("payg"), paid)
            if customer is not None:
                event = event.model_copy(update={"customer_id": customer})
        if event.customer_id is not None:
            account = await account_of_customer(await db("accounts"), event.customer_id)
            event = event.model_copy(update={"account_id": account})
        # Past the timeout, answer 503 and let Stripe retry rather than hold a connection (and the event's lock);
        # a send that completes late is published again on the retry: same event id, folded once.
        await asyncio.wait_for(res.publisher.publish(event), settings.stripe_webhook_publish_timeout_seconds)
        await store.log_event(conn, event, body)
    return Receipt(event.stripe_event_id, duplicate=False)
