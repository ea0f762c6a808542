"""Subscribing to Pro and changing plans in Stripe: checkout, proration preview and change, the customer portal.

A plan change swaps the price of the subscription's base item and leaves the metered overage item alone. Its
proration behaviour is chosen per change (`create_prorations`, `always_invoice`, `none`); the preview and the
change carry the same `proration_date`, so what was previewed is what is applied. The change's idempotency key is
derived from the change itself, so a retried or doubled request changes the plan once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlencode

import stripe

from jobmeter.settings import Settings
from projections.subscriptions.state import SubscriptionSnapshot, plan_allowances, snapshot

Behaviour = Literal["create_prorations", "always_invoice", "none"]
BEHAVIOURS: tuple[Behaviour, ...] = ("create_prorations", "always_invoice", "none")
Plan = Literal["pro_monthly", "pro_annual"]


class SubscriptionError(ValueError):
    """A change that cannot be made as asked; the message says why."""


def plan_price(settings: Settings, plan: Plan) -> str:
    price = settings.stripe_pro_price_id if plan == "pro_monthly" else settings.stripe_pro_annual_price_id
    if not price:
        name = "STRIPE_PRO_PRICE_ID" if plan == "pro_monthly" else "STRIPE_PRO_ANNUAL_PRICE_ID"
        raise SubscriptionError(f"{name} is not set: run `jobmeter stripe sync` and put the IDs in the environment")
    return price


def plans(settings: Settings) -> dict[str, int]:
    """Base price -> jobs included per billing period, from the configured Pro prices."""
    return plan_allowances(settings.stripe_pro_price_id, settings.stripe_pro_annual_price_id,
                           settings.jobmeter_plan_included_jobs)


def checkout_params(settings: Settings, account_id: str, customer_id: str, plan: Plan) -> dict[str, Any]:
    """A Checkout Session for Pro: the base price and the metered overage price (metered items take no quantity)."""
    if not settings.stripe_metered_overage_price_id:
        raise SubscriptionError("STRIPE_METERED_OVERAGE_PRICE_ID is not set: run `jobmeter stripe sync`")
    return {
        "mode": "subscription",
        "customer": customer_id,
        "client_reference_id": account_id,
        "line_items": [{"price": plan_price(settings, plan), "quantity": 1},
                       {"price": settings.stripe_metered_overage_price_id}],
        "subscription_data": {"metadata": {"account_id": account_id}},
        "metadata": {"account_id": account_id},
        "success_url": settings.stripe_portal_return_url + "?checkout=success&session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": settings.stripe_portal_return_url + "?checkout=cancelled",
    }


def payment_link(settings: Settings, account_id: str, email: str | None = None) -> str | None:
    """The configured Payment Link, carrying the account so the resulting subscription maps back to it."""
    base = settings.next_public_stripe_payment_link_subscription
    if not base:
        return None
    query = {"client_reference_id": account_id, **({"prefilled_email": email} if email else {})}
    return f"{base}{'&' if '?' in base else '?'}{urlencode(query)}"


def change_items(current: SubscriptionSnapshot, target_price: str) -> list[dict[str, Any]]:
    """The `items` of a plan change: the base item gets the target price; other items (overage) stay as they are."""
    if current.base_item_id is None:
        raise SubscriptionError(f"subscription {current.subscription_id} has no base (licensed) item to change")
    if current.base_price_id == target_price:
        raise SubscriptionError(f"subscription {current.subscription_id} is already on {target_price}")
    return [{"id": current.base_item_id, "price": target_price}]


def change_key(subscription_id: str, target_price: str, behaviour: Behaviour, proration_date: int) -> str:
    return f"jobmeter-plan-change-{subscription_id}-{target_price}-{behaviour}-{proration_date}"


@dataclass(frozen=True)
class ProrationPreview:
    subscription_id: str
    target_price: str
    behaviour: Behaviour
    proration_date: int
    amount_due: int  # minor units, the next invoice as it would be
    proration_amount: int  # minor units, the sum of the proration lines
    currency: str

    def as_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _is_proration(line: Any) -> bool:
    parent = line.get("parent") or {}
    for key in ("subscription_item_details", "invoice_item_details"):
        details = parent.get(key) or {}
        if details.get("proration"):
            return True
    return bool(line.get("proration"))  # older API versions


def current_subscription(client: stripe.StripeClient, subscription_id: str) -> SubscriptionSnapshot:
    found = client.v1.subscriptions.retrieve(subscription_id, {"expand": ["items.data.price"]})
    return snapshot(found.to_dict())


def preview_change(
    client: stripe.StripeClient, current: SubscriptionSnapshot, target_price: str, behaviour: Behaviour,
    proration_date: datetime,
) -> ProrationPreview:
    when = int(proration_date.timestamp())
    params: Any = {
        "customer": current.customer_id,
        "subscription": current.subscription_id,
        "subscription_details": {
            "items": change_items(current, target_price),
            "proration_behavior": behaviour,
            "proration_date": when,
        },
    }
    invoice = client.v1.invoices.create_preview(params)
    lines = invoice.to_dict().get("lines", {}).get("data", [])
    return ProrationPreview(
        subscription_id=current.subscription_id, target_price=target_price, behaviour=behaviour,
        proration_date=when, amount_due=int(invoice.amount_due or 0),
        proration_amount=sum(int(line.get("amount") or 0) for line in lines if _is_proration(line)),
        currency=str(invoice.currency),
    )


def apply_change(
    client: stripe.StripeClient, current: SubscriptionSnapshot, target_price: str, behaviour: Behaviour,
    proration_date: datetime,
) -> SubscriptionSnapshot:
    """Change the plan as previewed (same proration date); Stripe's events then update the projection."""
    when = int(proration_date.timestamp())
    params: Any = {"items": change_items(current, target_price), "proration_behavior": behaviour,
                   "proration_date": when, "expand": ["items.data.price"]}
    updated = client.v1.subscriptions.update(
        current.subscription_id,
        params,
        {"idempotency_key": change_key(current.subscription_id, target_price, behaviour, when)},
    )
    return snapshot(updated.to_dict())


def portal_session(client: stripe.StripeClient, settings: Settings, customer_id: str) -> str:
    session = client.v1.billing_portal.sessions.create(
        {"customer": customer_id, "return_url": settings.stripe_portal_return_url}
    )
    return str(session.url)


def checkout_session(client: stripe.StripeClient, settings: Settings, account_id: str, customer_id: str,
                     plan: Plan) -> tuple[str, str | None]:
    session = client.v1.checkout.sessions.create(
        checkout_params(settings, account_id, customer_id, plan)  # type: ignore[arg-type]
    )
    return str(session.id), session.url
