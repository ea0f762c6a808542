"""An account's billing over HTTP (admin token): its Stripe period, included jobs, used, overage and the charge it
implies; and the Stripe sessions a billing page needs — Pro checkout, the customer portal, plan-change previews
and changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, TypeVar

import stripe
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, StringConstraints

from events.types import AccountId
from projections.subscriptions.queries import NoSuchAccount, billing_summary
from services.accounts.commands import get_account
from services.http.auth import AdminRoute
from services.http.problems import Timestamp, problems, stripe_refusal
from services.stripe_adapter.catalog import CURRENCY, OVERAGE_CENTS_PER_JOB
from services.stripe_adapter.client import make_client
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

router = APIRouter(tags=["billing"], route_class=AdminRoute, responses=problems(401, 422))
T = TypeVar("T")

SubscriptionId = Annotated[str, StringConstraints(pattern=r"^sub_[A-Za-z0-9]+$", max_length=255)]
# A Unix time a datetime can hold (up to 9999-12-31), so a proration date never overflows the calendar.
UnixTime = Annotated[int, Field(gt=0, le=253_402_300_799)]


class Period(BaseModel):
    start: Timestamp | None
    end: Timestamp | None


class Charge(BaseModel):
    amount: int = Field(description="Minor units (cents).")
    currency: str


class BillingSummary(BaseModel):
    account_id: str
    stripe_customer_id: str
    subscription_id: str
    status: str
    base_price_id: str | None
    interval: str | None
    period: Period
    included_jobs: int
    used_jobs: int
    reported_to_stripe: int
    overage_jobs: int
    overage_charge: Charge


@router.get("/v1/accounts/{account_id}/billing", responses=problems(404))
async def billing(account_id: AccountId, request: Request) -> BillingSummary:
    settings = request.app.state.settings
    async with request.app.state.runtime.res.connections() as db:
        try:
            summary = await billing_summary(
                db, account_id, plans(settings), Decimal(OVERAGE_CENTS_PER_JOB), CURRENCY
            )
        except NoSuchAccount:
            raise HTTPException(404, detail=f"no account {account_id!r}") from None
    if summary is None:
        raise HTTPException(
            404, detail=f"account {account_id!r} has no Stripe subscription on record (has its checkout completed?)"
        )
    return BillingSummary.model_validate(summary)


async def _stripe(call: Callable[[], T]) -> T:
    """A Stripe call off the event loop; its failures as HTTP answers with the reason, never a 500."""
    try:
        return await asyncio.to_thread(call)
    except SubscriptionError as error:
        raise HTTPException(422, detail=str(error)) from None
    except stripe.StripeError as error:
        raise stripe_refusal(error) from None


async def _customer(request: Request, account_id: str) -> str:
    account = await get_account(request.app.state.runtime.res, account_id)
    if account is None:
        raise HTTPException(404, detail=f"no account {account_id!r}")
    if not account.get("stripe_customer_id"):
        raise HTTPException(422, detail=f"account {account_id!r} has no Stripe customer")
    return str(account["stripe_customer_id"])


class CheckoutRequest(BaseModel):
    plan: Plan = "pro_monthly"


class CheckoutAnswer(BaseModel):
    session_id: str
    url: str | None
    payment_link: str | None = Field(description="The configured Payment Link for this account, if there is one.")


class PortalAnswer(BaseModel):
    url: str


@router.post("/v1/accounts/{account_id}/checkout", responses=problems(400, 404, 413, 503))
async def checkout(account_id: AccountId, body: CheckoutRequest, request: Request) -> CheckoutAnswer:
    settings = request.app.state.settings
    customer = await _customer(request, account_id)
    client = make_client(settings)
    session_id, url = await _stripe(lambda: checkout_session(client, settings, account_id, customer, body.plan))
    return CheckoutAnswer(session_id=session_id, url=url, payment_link=payment_link(settings, account_id))


@router.post("/v1/accounts/{account_id}/portal", responses=problems(404, 503))
async def portal(account_id: AccountId, request: Request) -> PortalAnswer:
    settings = request.app.state.settings
    customer = await _customer(request, account_id)
    client = make_client(settings)
    return PortalAnswer(url=await _stripe(lambda: portal_session(client, settings, customer)))


class PlanChange(BaseModel):
    to: Plan
    behaviour: Behaviour = "create_prorations"
    proration_date: UnixTime | None = None  # the preview's answer carries the one to pass to the change


class Preview(BaseModel):
    subscription_id: str
    target_price: str
    behaviour: Behaviour
    proration_date: int = Field(description="Pass it to the change, so what was previewed is what is applied.")
    amount_due: int = Field(description="The next invoice as it would be, in minor units.")
    proration_amount: int = Field(description="The sum of the proration lines, in minor units.")
    currency: str


class Changed(BaseModel):
    subscription_id: str
    status: str
    base_price_id: str | None
    proration_behavior: Behaviour
    proration_date: int


@router.post("/v1/subscriptions/{subscription_id}/preview", responses=problems(400, 413, 503))
async def preview(subscription_id: SubscriptionId, body: PlanChange, request: Request) -> Preview:
    settings = request.app.state.settings
    client = make_client(settings)
    when = _when(body.proration_date)

    def run() -> Preview:
        current = current_subscription(client, subscription_id)
        previewed = preview_change(client, current, plan_price(settings, body.to), body.behaviour, when)
        return Preview.model_validate(previewed.as_json())

    return await _stripe(run)


@router.post("/v1/subscriptions/{subscription_id}/change", responses=problems(400, 413, 503))
async def change(subscription_id: SubscriptionId, body: PlanChange, request: Request) -> Changed:
    if body.proration_date is None:
        raise HTTPException(422, detail="proration_date is required: pass the one the preview returned")
    proration_date = body.proration_date
    settings = request.app.state.settings
    client = make_client(settings)
    when = _when(proration_date)

    def run() -> Changed:
        current = current_subscription(client, subscription_id)
        updated = apply_change(client, current, plan_price(settings, body.to), body.behaviour, when)
        return Changed(subscription_id=updated.subscription_id, status=updated.status,
                       base_price_id=updated.base_price_id, proration_behavior=body.behaviour,
                       proration_date=proration_date)

    return await _stripe(run)


def _when(value: int | None) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC) if value else datetime.now(UTC).replace(microsecond=0)
