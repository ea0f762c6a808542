"""Stripe events the demo delivers through the real webhook bridge, signed as Stripe signs them.

`services.stripe_adapter.fixtures` shapes the dunning events; the
ones here complete what the demo's scenarios need: a paid
top-up Checkout Session, a recharge PaymentIntent that succeeded, and a subscription with its base and metered
items. Shaped like Stripe's payloads; only the fields jobmeter reads are guaranteed meaningful.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from jobmeter.settings import Settings
from services.stripe_adapter.fixtures import encode_event
from services.stripe_adapter.simulation import CONSOLE_PREFIX, simulated_event_id
from services.stripe_adapter.webhooks import sign


def event(event_type: str, obj: dict[str, Any], *, created: int | None = None,
          previous: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj, **({"previous_attributes": previous} if previous else {})}
    return {
        "id": simulated_event_id(CONSOLE_PREFIX), "object": "event", "api_version": "2025-03-31.basil",
        "created": int(time.time()) if created is None else created, "data": data, "livemode": False,
        "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}, "type": event_type,
    }


def topup_paid(account_id: str, customer_id: str | None, session_id: str, amount_minor: int,
               currency: str) -> dict[str, Any]:
    """`checkout.session.completed` of a PAYG top-up session (one jobmeter opened: `purpose` says so)."""
    return event("checkout.session.completed", {
        "id": session_id, "object": "checkout.session", "mode": "payment", "payment_status": "paid",
        "status": "complete", "amount_total": amount_minor, "currency": currency, "customer": customer_id,
        "client_reference_id": account_id, "metadata": {"account_id": account_id, "purpose": "payg_topup"},
    })


def recharge_succeeded(recharge: dict[str, Any], customer_id: str | None) -> dict[str, Any]:
    """`payment_intent.succeeded` of an off-session recharge, as the recharger sent it (its metadata)."""
    amount = recharge["amount_minor"]
    return event("payment_intent.succeeded", {
        "id": recharge["payment_intent_id"], "object": "payment_intent", "status": "succeeded",
        "amount": amount, "amount_received": amount, "currency": recharge["currency"], "customer": customer_id,
        "off_session": True, "metadata": {"recharge_id": recharge["recharge_id"]},
    })


def subscription(event_type: str, subscription_id: str, customer_id: str, base_price: str, interval: str,
                 overage_price: str, *, created: int, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """`customer.subscription.*` for a Pro subscription: the base (licensed) item and the metered overage item."""
    period_start = created - 3 * 24 * 3600  # mid-period: three days in
    period_end = period_start + (365 if interval == "year" else 30) * 24 * 3600
    items = [
        {"id": f"si_{subscription_id}_base", "object": "subscription_item", "quantity": 1,
         "price": {"id": base_price, "recurring": {"interval": interval, "usage_type": "licensed"}},
         "current_period_start": period_start, "current_period_end": period_end},
        {"id": f"si_{subscription_id}_over", "object": "subscription_item",
         "price": {"id": overage_price, "recurring": {"interval": "month", "usage_type": "metered"}},
         "current_period_start": period_start, "current_period_end": period_end},
    ]
    return event(event_type, {
        "id": subscription_id, "object": "subscription", "customer": customer_id, "status": "active",
        "cancel_at_period_end": False, "items": {"object": "list", "data": items},
        "metadata": {}, "livemode": False,
    }, created=created, previous=previous)


async def deliver(client: httpx.AsyncClient, settings: Settings, stripe_event: dict[str, Any]) -> None:
    """Post a signed delivery to the engine's `/webhooks/stripe` over HTTP; raises unless the bridge took it."""
    body = encode_event(stripe_event)
    secret = settings.stripe_webhook_secret.get_secret_value()
    headers = {"Stripe-Signature": sign(body, secret), "Content-Type": "application/json"}
    response = await client.post("/webhooks/stripe", content=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"the webhook bridge refused {stripe_event['type']}: {response.status_code} {response.text}")
