"""The console's actions that belong to other areas (Checkout for a subscription, a PAYG top-up).

Each area owns its Stripe calls; the console only starts them, through these two adapters. An area that is
not in this deployment raises NotAvailable (the page says "not available"); an area's own refusal (a price
not configured, not a PAYG account) is a ValueError with its reason.
"""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType
from typing import Any

from projections.db import Connect
from services.platform.resources import Resources

PLANS = ("pro_monthly", "pro_annual")


class NotAvailable(LookupError):
    """The area that would do this is not part of this deployment."""


def area(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def subscriptions_available() -> bool:
    return area("services.subscriptions.plans") is not None


def topups_available() -> bool:
    return area("services.payg.commands") is not None


def http_url(url: Any) -> str:
    """The console puts the URL in a link: http(s) only."""
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ValueError(f"Stripe answered no usable Checkout URL ({url!r})")
    return url


async def subscription_checkout(res: Resources, account_id: str, customer_id: str, plan: str) -> str:
    """Where the customer subscribes: the configured Payment Link, else a new Checkout Session."""
    subscriptions = area("services.subscriptions.plans")
    if subscriptions is None:
        raise NotAvailable("Checkout for the subscription is not available in this deployment")
    if plan not in PLANS:
        raise ValueError(f"plan must be one of {', '.join(PLANS)}")
    link = subscriptions.payment_link(res.settings, account_id)
    if link:
        return http_url(link)
    from services.stripe_adapter.client import make_client

    client = make_client(res.settings)
    # The subscriptions area's Stripe call is synchronous: keep it off the event loop.
    _, url = await asyncio.to_thread(subscriptions.checkout_session, client, res.settings, account_id, customer_id,
                                     plan)
    return http_url(url)


async def topup_checkout(res: Resources, account_id: str, amount_minor: int | None) -> str:
    payg = area("services.payg.commands")
    if payg is None:
        raise NotAvailable("PAYG top-ups are not available in this deployment")
    opened: dict[str, Any] = await payg.open_topup(res, account_id, amount_minor)
    return http_url(opened.get("url"))


async def subscription_summary(db: Connect, res: Resources, account_id: str) -> dict[str, Any] | None:
    """This period's subscription as the subscriptions area computes it (included, used, overage, charge);
    None when the account has no subscription on record."""
    queries = area("projections.subscriptions.queries")
    subscriptions = area("services.subscriptions.plans")
    catalog = area("services.stripe_adapter.catalog")
    if queries is None or subscriptions is None or catalog is None:
        raise NotAvailable("subscriptions are not available in this deployment")
    from decimal import Decimal

    summary: dict[str, Any] | None = await queries.billing_summary(
        db, account_id, subscriptions.plans(res.settings), Decimal(catalog.OVERAGE_CENTS_PER_JOB), catalog.CURRENCY
    )
    return summary
