"""Accounts and their usage over HTTP, for operators and finance (admin token)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field

from events.accounts import ContactEmail
from events.types import AccountId, BillingModel, StripeCustomerId
from projections.ledger.queries import BadQuery, parse_group_by, usage
from services.accounts.commands import (
    AccountConflict,
    AccountError,
    UnknownAccount,
    get_account,
    list_accounts,
    register_account,
    set_contact,
)
from services.http.auth import AdminRoute
from services.http.billing import Charge
from services.http.problems import Timestamp, problems
from services.ledger.forecasts import period_forecast
from services.ledger.periods import month_start, next_month

router = APIRouter(tags=["accounts"], route_class=AdminRoute, responses=problems(401, 422))


class NewAccount(BaseModel):
    account_id: AccountId
    model: BillingModel
    stripe_customer_id: StripeCustomerId | None = None
    display_name: str | None = None
    contact_email: ContactEmail | None = Field(default=None, description="where the account's alerts are emailed")


class Account(BaseModel):
    account_id: str
    model: BillingModel
    stripe_customer_id: str | None
    display_name: str | None
    contact_email: str | None = None
    registered_at: Timestamp
    updated_at: Timestamp


class Registering(BaseModel):
    """Published, but not yet in the registry when the answer was due: it will be."""

    account_id: str
    state: Literal["registering"]


@router.post("/v1/accounts", status_code=201, response_model=Account,
             responses={202: {"model": Registering}, **problems(400, 409, 413)})
async def create_account(body: NewAccount, request: Request) -> JSONResponse:
    res = request.app.state.runtime.res
    try:
        account = await register_account(
            res, body.account_id, body.model, stripe_customer_id=body.stripe_customer_id,
            display_name=body.display_name, contact_email=body.contact_email,
        )
    except AccountError as error:
        status = 409 if isinstance(error, AccountConflict) else 422
        raise HTTPException(status, detail=str(error)) from None
    if account is None:
        return JSONResponse({"account_id": body.account_id, "state": "registering"}, status_code=202)
    return JSONResponse(account, status_code=201)


class Contact(BaseModel):
    contact_email: ContactEmail | None = Field(description="the address alerts are emailed to; null: none on file")


@router.put("/v1/accounts/{account_id}/contact", status_code=200, response_model=Account,
            responses={202: {"model": Registering}, **problems(400, 404, 413)})
async def put_contact(account_id: AccountId, body: Contact, request: Request) -> JSONResponse:
    """Set (or, with null, clear) the address the account's alerts are emailed to: an AccountContactSet event."""
    try:
        account = await set_contact(request.app.state.runtime.res, account_id, body.contact_email)
    except AccountError as error:
        raise HTTPException(404 if isinstance(error, UnknownAccount) else 422, detail=str(error)) from None
    if account is None:
        return JSONResponse({"account_id": account_id, "state": "registering"}, status_code=202)
    return JSONResponse(account)


@router.get("/v1/accounts")
async def accounts(request: Request, model: BillingModel | None = None) -> list[Account]:
    return [Account.model_validate(a) for a in await list_accounts(request.app.state.runtime.res, model)]


@router.get("/v1/accounts/{account_id}", responses=problems(404))
async def account(account_id: AccountId, request: Request) -> Account:
    found = await get_account(request.app.state.runtime.res, account_id)
    if found is None:
        raise HTTPException(404, detail=f"no account {account_id!r}")
    return Account.model_validate(found)


class UsageAnswer(BaseModel):
    account_id: str | None
    start: Timestamp = Field(alias="from")
    end: Timestamp = Field(alias="to")
    total: int
    groups: list[dict[str, int | str]] = Field(
        description="One per combination of the `group_by` keys, with its `jobs`; empty without `group_by`."
    )


def window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """[from, to) in UTC, the ledger's hours; BadQuery for times the calendar cannot hold."""
    try:
        start = start.astimezone(UTC) if start else month_start(datetime.now(UTC))
        return start, end.astimezone(UTC) if end else next_month(start)
    except (ValueError, OverflowError):
        raise BadQuery("from and to must fall between the years 1 and 9999 (UTC)") from None


@router.get("/v1/accounts/{account_id}/usage")
async def account_usage(
    account_id: AccountId,
    request: Request,
    start: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    group_by: str | None = None,
) -> UsageAnswer:
    """Jobs completed in [from, to) (whole hours, default this calendar month), optionally grouped by
    api, channel, hour, day or month."""
    try:
        start, end = window(start, end)
        groups = parse_group_by(group_by)
        async with request.app.state.runtime.res.pool_for("ledger").acquire() as conn:
            result = await usage(conn, account_id, start, end, groups)
    except BadQuery as error:
        raise HTTPException(422, detail=str(error)) from None
    return UsageAnswer.model_validate(result.as_json())


class Period(BaseModel):
    start: Timestamp
    end: Timestamp


class PeriodForecast(BaseModel):
    period: Period = Field(description="The live Stripe subscription's period, else the calendar month (UTC).")
    billing_model: BillingModel | None = Field(description="null for an account not registered.")
    jobs_to_date: int
    forecast_jobs: int = Field(description="The jobs the whole period is expected to hold.")
    forecast_low: int = Field(description="The interval's low end (nominally 90 %), never below jobs_to_date.")
    forecast_high: int
    included_jobs: int | None = Field(description="The plan's jobs in this period (subscriptions only).")
    forecast_overage_jobs: int | None = Field(description="Forecast jobs past the included ones (subscriptions).")
    forecast_charge: Charge | None = Field(
        description="The forecast overage charge (subscriptions) or spend (PAYG); null when billed elsewhere."
    )
    cap_reached_on: date | None = Field(
        description="The UTC day the account's cap on all its jobs will be reached (or was); null with no cap, or "
                    "when the forecast stays under it."
    )


@router.get("/v1/accounts/{account_id}/forecast")
async def account_forecast(account_id: AccountId, request: Request) -> PeriodForecast:
    """The current billing period's jobs so far and at its end, from the ledger, and what they will cost
    (`jobmeter forecast ACCOUNT`)."""
    document = await period_forecast(request.app.state.runtime.res, account_id, datetime.now(UTC))
    return PeriodForecast.model_validate(document)
