"""Realistic Stripe events of the types the dunning policy reads, for `jobmeter simulate webhook` and tests.

Shaped like Stripe's own payloads (API 2025+): only the fields we read are guaranteed meaningful.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

SUBSCRIPTION_STATUSES = ("active", "past_due", "unpaid", "canceled", "incomplete", "trialing")
EVENT_TYPES = (
    "invoice.payment_failed",
    "invoice.paid",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.marked_uncollectible",
    "invoice.voided",
    "customer.subscription.paused",
    "customer.subscription.resumed",
)
# customer.subscription.<kind>: the status it carries by default, and the one `previous_attributes` shows.
# Stripe pauses a subscription whose trial ended with no payment method (`trial_settings.end_behavior`).
SUBSCRIPTION_EVENTS: dict[str, tuple[str, str | None]] = {
    "updated": ("past_due", "active"), "deleted": ("canceled", None), "paused": ("paused", "trialing"),
    "resumed": ("active", "paused"),
}
RETRY_SECONDS = 3 * 24 * 3600  # when Stripe would try again after a failure that is not the last


def stripe_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def invoice(customer: str, *, paid: bool, attempt_count: int, next_attempt: int | None, created: int,
            subscription: str | None = None) -> dict[str, Any]:
    return {
        "id": current_invoice(customer),
        "object": "invoice",
        "customer": customer,
        "customer_email": f"billing+{customer.lower()}@example.com",
        "subscription": subscription or f"sub_{customer.removeprefix('cus_')}",
        "status": "paid" if paid else "open",
        "paid": paid,
        "attempted": True,
        "attempt_count": attempt_count,
        "next_payment_attempt": next_attempt,
        "amount_due": 4900,
        "amount_paid": 4900 if paid else 0,
        "amount_remaining": 0 if paid else 4900,
        "currency": "usd",
        "billing_reason": "subscription_cycle",
        "created": created,
        "livemode": False,
    }


def current_invoice(customer: str) -> str:
    """The customer's current invoice: a simulated failure and a simulated payment name the same one, as they
    would in Stripe (dunning settles each invoice on its own), unless the caller names another."""
    return f"in_{customer.removeprefix('cus_')}"


def subscription(customer: str, status: str, *, created: int) -> dict[str, Any]:
    return {
        "id": f"sub_{customer.removeprefix('cus_')}",
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": False,
        "created": created - 30 * 24 * 3600,
        "current_period_start": created - 24 * 3600,
        "current_period_end": created + 29 * 24 * 3600,
        "livemode": False,
    }


def build_event(
    event_type: str,
    customer: str,
    *,
    final: bool = False,
    status: str | None = None,
    attempt_count: int | None = None,
    created: int | None = None,
    event_id: str | None = None,
    invoice_id: str | None = None,
) -> dict[str, Any]:
    """A Stripe event as Stripe would deliver it.

    `final` makes an `invoice.payment_failed` the last attempt (`next_payment_attempt: null`); `status` sets a
    subscription's status (default `past_due` for updated, `canceled` for deleted, `paused` for paused, `active`
    for resumed); `invoice_id` names the invoice of an `invoice.*` event (default: the customer's current one). Always
    `"livemode": false`: a built event is never Stripe's live word, and the bridge of a live deployment refuses it.
    Simulations pass an `event_id` with a prefix of `simulation.SIMULATED_PREFIXES`, which the webhook log marks.
    """
    now = int(time.time()) if created is None else created
    if event_type == "invoice.payment_failed":
        attempts = attempt_count or (4 if final else 1)
        obj = invoice(customer, paid=False, attempt_count=attempts,
                      next_attempt=None if final else now + RETRY_SECONDS, created=now)
        previous: dict[str, Any] | None = None
    elif event_type == "invoice.marked_uncollectible":
        obj = invoice(customer, paid=False, attempt_count=attempt_count or 4, next_attempt=None, created=now)
        obj["status"] = "uncollectible"
        previous = {"status": "open"}
    elif event_type == "invoice.paid":
        obj = invoice(customer, paid=True, attempt_count=attempt_count or 1, next_attempt=None, created=now)
        previous = None
    elif event_type == "invoice.voided":
        obj = invoice(customer, paid=False, attempt_count=attempt_count or 4, next_attempt=None, created=now)
        obj.update(status="void", amount_remaining=0)
        previous = {"status": "open"}
    elif event_type.startswith("customer.subscription.") and event_type.rpartition(".")[2] in SUBSCRIPTION_EVENTS:
        default, before = SUBSCRIPTION_EVENTS[event_type.rpartition(".")[2]]
        obj = subscription(customer, status or default, created=now)
        previous = {"status": before} if before else None
    else:
        raise ValueError(f"cannot simulate {event_type!r}; choose from: {', '.join(EVENT_TYPES)}")
    if invoice_id is not None and obj["object"] == "invoice":
        obj["id"] = invoice_id
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {
        "id": event_id or stripe_id("evt"),
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": now,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def encode_event(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


# Money going back on a PAYG payment: shaped like stripe-mock's fixtures of a charge and a dispute (Stripe's
# OpenAPI fixture set), with the fields those events carry in a webhook filled in.


def charge(payment_intent: str, *, amount: int, amount_refunded: int = 0, customer: str | None = None,
           charge_id: str | None = None, created: int | None = None) -> dict[str, Any]:
    """A card charge that paid `payment_intent`; `amount_refunded` is Stripe's running total of its refunds."""
    return {
        "id": charge_id or f"ch_{payment_intent.removeprefix('pi_')}",
        "object": "charge",
        "amount": amount, "amount_captured": amount, "amount_refunded": amount_refunded,
        "balance_transaction": stripe_id("txn"), "captured": True, "created": created or int(time.time()),
        "currency": "usd", "customer": customer, "description": None, "disputed": False, "livemode": False,
        "metadata": {}, "paid": True, "payment_intent": payment_intent, "payment_method": stripe_id("pm"),
        "refunded": amount_refunded >= amount, "status": "succeeded",
    }


def dispute(payment_intent: str, *, amount: int, status: str = "needs_response", dispute_id: str | None = None,
            charge_id: str | None = None, created: int | None = None) -> dict[str, Any]:
    """A chargeback on the charge that paid `payment_intent`. A dispute names no customer."""
    return {
        "id": dispute_id or f"dp_{payment_intent.removeprefix('pi_')}",
        "object": "dispute",
        "amount": amount, "balance_transactions": [],
        "charge": charge_id or f"ch_{payment_intent.removeprefix('pi_')}",
        "created": created or int(time.time()), "currency": "usd",
        "evidence_details": {"due_by": (created or int(time.time())) + 7 * 24 * 3600, "has_evidence": False,
                             "past_due": False, "submission_count": 0},
        "is_charge_refundable": False, "livemode": False, "metadata": {}, "payment_intent": payment_intent,
        "reason": "fraudulent", "status": status,
    }


def payment_event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None,
                  created: int | None = None) -> dict[str, Any]:
    """`charge.refunded` (a `charge`) or `charge.dispute.created` / `charge.dispute.closed` (a `dispute`) as Stripe
    would deliver it; always `"livemode": false`, like `build_event`."""
    return {
        "id": event_id or stripe_id("evt"), "object": "event", "api_version": "2025-03-31.basil",
        "created": int(time.time()) if created is None else created, "data": {"object": obj}, "livemode": False,
        "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}, "type": event_type,
    }
