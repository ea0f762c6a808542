"""Pay-as-you-go over HTTP (admin token): balances, recharge settings, top-ups."""

from __future__ import annotations

from typing import Annotated, Literal

import stripe
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from events.payg import PaygConfigured, PaymentMethodId
from events.types import AccountId, StripeCustomerId
from services.http.auth import AdminRoute
from services.http.problems import Timestamp, problems, stripe_refusal
from services.payg import commands as payg

router = APIRouter(tags=["payg"], route_class=AdminRoute, responses=problems(401, 404, 409, 422))


class TopUp(BaseModel):
    amount_minor: Annotated[int | None, Field(gt=0, le=10**9)] = None


class Configure(BaseModel):
    threshold_minor: Annotated[int | None, Field(ge=0, le=10**12)] = None
    recharge_minor: Annotated[int | None, Field(ge=0, le=10**12)] = None
    auto_recharge: bool | None = None
    payment_method_id: PaymentMethodId | None = None
    customer_id: StripeCustomerId | None = None


class Recharge(BaseModel):
    recharge_id: str
    seq: int
    amount_minor: int
    currency: str
    state: Literal["requested", "succeeded", "failed", "canceled"]
    idempotency_key: str
    payment_intent_id: str | None
    attempts: int
    failure_code: str | None
    requested_at: Timestamp
    sent_at: Timestamp | None
    settled_at: Timestamp | None


class Balance(BaseModel):
    account_id: str
    balance_minor: int
    currency: str
    threshold_minor: int
    recharge_minor: int
    auto_recharge: bool
    recharge_in_flight: bool
    customer_id: str | None
    payment_method_id: str | None
    failures: int = Field(description="Failed recharges in a row.")
    backoff_until: Timestamp | None
    keys_suspended: bool
    recharges: list[Recharge] = Field(description="The latest, newest first.")


class TopUpSession(BaseModel):
    account_id: str
    kind: Literal["payment_link", "checkout"]
    url: str | None
    checkout_session_id: str | None
    amount_minor: int | None = None
    currency: str | None = None


def _refuse(error: payg.PaygError) -> HTTPException:
    return HTTPException(error.status, detail=str(error))


@router.get("/v1/accounts/{account_id}/balance")
async def balance(account_id: AccountId, request: Request) -> Balance:
    try:
        return Balance.model_validate(await payg.balance(request.app.state.runtime.res, account_id))
    except payg.PaygError as error:
        raise _refuse(error) from None


@router.post("/v1/accounts/{account_id}/payg/topup", status_code=201, responses=problems(400, 413, 503))
async def topup(account_id: AccountId, request: Request, body: TopUp | None = None) -> TopUpSession:
    """A Checkout Session (or the Payment Link) for the customer to top up with; the card is saved for
    automatic recharges. The balance is credited when Stripe reports the payment."""
    amount = (body or TopUp()).amount_minor
    try:
        return TopUpSession.model_validate(await payg.open_topup(request.app.state.runtime.res, account_id, amount))
    except payg.PaygError as error:
        raise _refuse(error) from None
    except stripe.StripeError as error:
        raise stripe_refusal(error) from None


@router.post("/v1/accounts/{account_id}/payg/config", status_code=202, responses=problems(400, 413))
async def configure(account_id: AccountId, body: Configure, request: Request) -> PaygConfigured:
    """Publish the account's new recharge settings (what is not given stays as it is); the answer is the event."""
    try:
        return await payg.configure(request.app.state.runtime.res, account_id, **body.model_dump())
    except payg.PaygError as error:
        raise _refuse(error) from None
