"""Accounts and their usage over HTTP, for operators and finance (admin token)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel

from events.types import BillingModel
from projections.ledger.queries import BadQuery, parse_group_by, usage
from services.accounts.commands import AccountError, get_account, list_accounts, register_account
from services.http.auth import require_admin

router = APIRouter(tags=["accounts"], dependencies=[Depends(require_admin)])


class NewAccount(BaseModel):
    account_id: str
    model: BillingModel
    stripe_customer_id: str | None = None
    display_name: str | None = None


@router.post("/v1/accounts", status_code=201, responses={202: {}, 409: {}, 422: {}})
async def create_account(body: NewAccount, request: Request) -> JSONResponse:
    res = request.app.state.runtime.res
    try:
        account = await register_account(
            res, body.account_id, body.model, stripe_customer_id=body.stripe_customer_id,
            display_name=body.display_name,
        )
    except AccountError as error:
        status = 409 if "already exists" in str(error) else 422
        raise HTTPException(status, detail=str(error)) from None
    if account is None:
        return JSONResponse({"account_id": body.account_id, "state": "registering"}, status_code=202)
    return JSONResponse(account, status_code=201)


@router.get("/v1/accounts")
async def accounts(request: Request, model: BillingModel | None = None) -> list[dict[str, Any]]:
    return await list_accounts(request.app.state.runtime.res, model)


@router.get("/v1/accounts/{account_id}", responses={404: {}})
async def account(account_id: str, request: Request) -> dict[str, Any]:
    found = await get_account(request.app.state.runtime.res, account_id)
    if found is None:
        raise HTTPException(404, detail=f"no account {account_id!r}")
    return found


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


@router.get("/v1/accounts/{account_id}/usage", responses={422: {}})
async def account_usage(
    account_id: str,
    request: Request,
    start: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    group_by: str | None = None,
) -> dict[str, Any]:
    """Jobs completed in [from, to) (whole hours, default this calendar month), optionally grouped by
    api, channel, hour, day or month."""
    start = start or month_start(datetime.now(UTC))
    end = end or next_month(start)
    try:
        groups = parse_group_by(group_by)
        async with request.app.state.runtime.res.pool.acquire() as conn:
            result = await usage(conn, account_id, start, end, groups)
    except BadQuery as error:
        raise HTTPException(422, detail=str(error)) from None
    return result.as_json()
