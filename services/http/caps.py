"""Usage caps over HTTP (admin token): set, read and clear an account's caps. Setting one publishes an event; the
caps consumer folds it, and a reached hard cap answers 429 at the key check (`/v1/keys/check`)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from events.caps import Jobs, Minor
from events.types import AccountId, ApiName
from services.http.auth import AdminRoute
from services.http.problems import Timestamp, problems
from services.keys import caps

router = APIRouter(tags=["caps"], route_class=AdminRoute, responses=problems(401, 422))


class NewCap(BaseModel):
    jobs: Jobs = Field(description="Jobs per billing period.")
    api: ApiName | None = Field(default=None, description="Count only this API surface; null: every one.")
    hard: bool = Field(default=True, description="Stop the account's keys once reached; false: alert only.")
    spend_minor: Minor | None = Field(default=None, description="A spend cap too, in minor units (PAYG prices).")


class CapChange(BaseModel):
    """Published; the caps consumer applies it within a moment."""

    type: str
    account_id: str
    api: str | None
    jobs: int | None = None
    hard: bool | None = None
    spend_minor: int | None = None
    set_at: datetime | None = None
    cleared_at: datetime | None = None


class CapInForce(BaseModel):
    api: str | None
    jobs: int
    hard: bool
    spend_minor: int | None
    set_at: Timestamp
    used: int = Field(description="Jobs counted against it in the account's current period.")


class Caps(BaseModel):
    account_id: str
    caps: list[CapInForce]
    period_start: Timestamp | None
    period_end: Timestamp | None
    held: bool = Field(description="Whether a hard cap holds the account's keys now.")
    held_reason: str | None


def _refused(error: caps.CapCommandError) -> HTTPException:
    return HTTPException(404 if str(error).startswith("no account") else 422, detail=str(error))


@router.put("/v1/accounts/{account_id}/caps", status_code=202, responses=problems(400, 404, 413))
async def put_cap(account_id: AccountId, body: NewCap, request: Request) -> CapChange:
    """Set the cap of one scope (all jobs, or one API surface): the latest for a scope wins."""
    try:
        event = await caps.set_cap(request.app.state.runtime.res, account_id, body.jobs, api=body.api,
                                   hard=body.hard, spend_minor=body.spend_minor)
    except caps.CapCommandError as error:
        raise _refused(error) from None
    return CapChange.model_validate(caps.as_json(event))


@router.delete("/v1/accounts/{account_id}/caps", status_code=202, responses=problems(404))
async def delete_cap(account_id: AccountId, request: Request, api: ApiName | None = None) -> CapChange:
    """Clear the cap of one scope (`?api=`; none: the cap on all jobs)."""
    try:
        event = await caps.clear_cap(request.app.state.runtime.res, account_id, api=api)
    except caps.CapCommandError as error:
        raise _refused(error) from None
    return CapChange.model_validate(caps.as_json(event))


@router.get("/v1/accounts/{account_id}/caps", responses=problems(404))
async def get_caps(account_id: AccountId, request: Request) -> Caps:
    """The caps in force as folded, with their usage this period and whether they hold the keys."""
    res = request.app.state.runtime.res
    try:
        await caps.known(res, account_id, None)
    except caps.CapCommandError as error:
        raise _refused(error) from None
    rows = await caps.list_caps(res, account_id)
    first = rows[0] if rows else {}
    return Caps(account_id=account_id, caps=[CapInForce.model_validate(r) for r in rows],
                period_start=first.get("period_start"), period_end=first.get("period_end"),
                held=bool(first.get("held")), held_reason=first.get("held_reason"))
