"""Pay-as-you-go over HTTP (admin token): balances, recharge settings, top-ups."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from services.http.auth import require_admin
from services.payg import commands as payg

router = APIRouter(tags=["payg"], dependencies=[Depends(require_admin)])


class TopUp(BaseModel):
    amount_minor: Annotated[int | None, Field(gt=0, le=10**9)] = None


class Configure(BaseModel):
    threshold_minor: Annotated[int | None, Field(ge=0, le=10**12)] = None
    recharge_minor: Annotated[int | None, Field(ge=0, le=10**12)] = None
    auto_recharge: bool | None = None
    payment_method_id: str | None = None
    customer_id: str | None = None


def _refuse(error: payg.PaygError) -> HTTPException:
    return HTTPException(error.status, detail=str(error))


@router.get("/v1/accounts/{account_id}/balance", responses={404: {}, 409: {}})
async def balance(account_id: str, request: Request) -> dict[str, Any]:
    try:
        return await payg.balance(request.app.state.runtime.res, account_id)
    except payg.PaygError as error:
        raise _refuse(error) from None


@router.post("/v1/accounts/{account_id}/payg/topup", status_code=201, responses={404: {}, 409: {}, 422: {}})
async def topup(account_id: str, request: Request, body: TopUp | None = None) -> dict[str, Any]:
    """A Checkout Session (or the Payment Link) for the customer to top up with; the card is saved for
    automatic recharges. The balance is credited when Stripe reports the payment."""
    try:
        return await payg.open_topup(request.app.state.runtime.res, account_id, (body or TopUp()).amount_minor)
    except payg.PaygError as error:
        raise _refuse(error) from None


@router.post("/v1/accounts/{account_id}/payg/config", status_code=202, responses={404: {}, 409: {}, 422: {}})
async def configure(account_id: str, body: Configure, request: Request) -> dict[str, Any]:
    try:
        event = await payg.configure(request.app.state.runtime.res, account_id, **body.model_dump())
    except payg.PaygError as error:
        raise _refuse(error) from None
    return event.model_dump(mode="json")
