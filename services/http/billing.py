"""An account's billing over HTTP (admin token): its Stripe period, included jobs, used, overage and the charge it
implies; and the Stripe sessions a billing page needs — Pro checkout, the customer portal, plan-change previews
and changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import stripe
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel

from projections.subscriptions.queries import NoSuchAccount, billing_summary
from services.accounts.commands import get_account
from services.http.auth import require_admin
from services.stripe_adapter.catalog import CURRENCY, OVERAGE_CENTS_PER_JOB
from services.stripe_adapter.client import is_retryable, make_client
from services.subscriptions.plans import (
    Behaviour,
    Plan,
    SubscriptionError,
    apply_change,
    checkout_session,
    current_subscription,
    payment_link,
    plan_price,
    plans,
    portal_session,
    preview_change,
)

router = APIRouter(tags=["billing"], dependencies=[Depends(require_admin)])
T = TypeVar("T")


@router.get("/v1/accounts/{account_id}/billing", responses={404: {}})
async def billing(account_id: str, request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    async with request.app.state.runtime.res.pool.acquire() as conn:
        try:
            summary = await billing_summary(
                conn, account_id, plans(settings), Decimal(OVERAGE_CENTS_PER_JOB), CURRENCY
            )
        except NoSuchAccount:
            raise HTTPException(404, detail=f"no account {account_id!r}") from None
    if summary is None:
        raise HTTPException(
            404, detail=f"account {account_id!r} has no Stripe subscription on record (has its checkout completed?)"
        )
    return summary


async def _stripe(call: Callable[[], T]) -> T:
    """A Stripe call off the event loop; its failures as HTTP answers with the reason, never a 500."""
    try:
        return await asyncio.to_thread(call)
    except SubscriptionError as error:
        raise HTTPException(422, detail=str(error)) from None
    except stripe.StripeError as error:
        if is_retryable(error):
            raise HTTPException(503, detail="Stripe is unavailable; try again") from None
        raise HTTPException(422, detail=f"Stripe refused it: {error.user_message or error}") from None


async def _customer(request: Request, account_id: str) -> str:
    account = await get_account(request.app.state.runtime.res, account_id)
    if account is None:
        raise HTTPException(404, detail=f"no account {account_id!r}")
    if not account.get("stripe_customer_id"):
        raise HTTPException(422, detail=f"account {account_id!r} has no Stripe customer")
    return str(account["stripe_customer_id"])


class CheckoutRequest(BaseModel):
    plan: Plan = "pro_monthly"


@router.post("/v1/accounts/{account_id}/checkout", responses={404: {}, 422: {}, 503: {}})
async def checkout(account_id: str, body: CheckoutRequest, request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    customer = await _customer(request, account_id)
    client = make_client(settings)
    session_id, url = await _stripe(lambda: checkout_session(client, settings, account_id, customer, body.plan))
    return {"session_id": session_id, "url": url, "payment_link": payment_link(settings, account_id)}


@router.post("/v1/accounts/{account_id}/portal", responses={404: {}, 422: {}, 503: {}})
async def portal(account_id: str, request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    customer = await _customer(request, account_id)
    client = make_client(settings)
    return {"url": await _stripe(lambda: portal_session(client, settings, customer))}


class PlanChange(BaseModel):
    to: Plan
    behaviour: Behaviour = "create_prorations"
    proration_date: int | None = None  # unix time; the preview's answer carries the one to pass to the change


@router.post("/v1/subscriptions/{subscription_id}/preview", responses={422: {}, 503: {}})
async def preview(subscription_id: str, body: PlanChange, request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    client = make_client(settings)
    when = _when(body.proration_date)

    def run() -> dict[str, Any]:
        current = current_subscription(client, subscription_id)
        return preview_change(client, current, plan_price(settings, body.to), body.behaviour, when).as_json()

    return await _stripe(run)


@router.post("/v1/subscriptions/{subscription_id}/change", responses={422: {}, 503: {}})
async def change(subscription_id: str, body: PlanChange, request: Request) -> dict[str, Any]:
    if body.proration_date is None:
        raise HTTPException(422, detail="proration_date is required: pass the one the preview returned")
    settings = request.app.state.settings
    client = make_client(settings)
    when = _when(body.proration_date)

    def run() -> dict[str, Any]:
        current = current_subscription(client, subscription_id)
        updated = apply_change(client, current, plan_price(settings, body.to), body.behaviour, when)
        return {"subscription_id": updated.subscription_id, "status": updated.status,
                "base_price_id": updated.base_price_id, "proration_behavior": body.behaviour,
                "proration_date": body.proration_date}

    return await _stripe(run)


def _when(value: int | None) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC) if value else datetime.now(UTC).replace(microsecond=0)
