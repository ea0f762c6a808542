"""API keys over HTTP: the gateway's key check (the key itself is the credential), and admin commands."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from events.keys import HoldSource, KeyId
from events.types import AccountId, ApiName, BillingModel
from jobmeter.settings import DEFAULT_APIS
from services.http.auth import AdminRoute, bearer
from services.http.problems import Timestamp, problems
from services.keys.commands import KeyCommandError, create_key, list_keys, revoke_key, rotate_key
from services.keys.index import KeyIndex, KeyState

router = APIRouter(tags=["keys"])
admin = APIRouter(tags=["keys"], route_class=AdminRoute, responses=problems(401, 422))


class Hold(BaseModel):
    source: HoldSource = Field(description="Who holds the account's keys: dunning, payg or cap.")
    reason: str
    until: Timestamp | None = Field(description="When the hold ends by itself (a cap: its period's end).")
    scope: list[str] | None = Field(default=None, description="The API surfaces the hold stops (caps on some "
                                                              "surfaces only); null: every surface.")


class KeyStatus(BaseModel):
    account_id: str
    key_id: str
    state: KeyState
    billing_model: BillingModel | None
    reason: str | None = Field(default=None, description="Why the key may not be used (403 and 429 only).")
    holds: list[Hold] | None = Field(default=None, description="Every source holding the account (403, 429).")
    retry_after: int | None = Field(default=None, description="Seconds to the cap's period end (429 only).")


STATUS: dict[str, int] = {"active": 200, "capped": 429}
API_QUERY = Query(
    default=None, examples=list(DEFAULT_APIS),
    description="The API surface the call is for, one of `JOBMETER_APIS` (by default " + ", ".join(DEFAULT_APIS)
                + "). Named, only the holds on that surface (a cap on it) or on every surface apply; unnamed, every "
                  "hold applies, so a caller that does not say is refused whenever the account is held.",
)


@router.get("/v1/keys/check", response_model=KeyStatus,
            responses={403: {"model": KeyStatus, "description": "A revoked key, or its account is suspended."},
                       429: {"model": KeyStatus, "description": "Only usage caps hold the account: retry after "
                                                                "`Retry-After` seconds (the period's end)."},
                       **problems(401, 422, 503)})
async def check_key(request: Request, api: ApiName | None = API_QUERY) -> JSONResponse:
    """200 `{account_id, key_id, state, billing_model}` for a working key; 401 unknown, 403 revoked or suspended,
    429 with `Retry-After` when a hard usage cap is all that holds it (for `api`, when named); 422 for an API
    surface jobmeter does not know.

    Answered from memory, without I/O: the index follows the key events as they reach Kafka."""
    index: KeyIndex = request.app.state.key_index
    if not index.ready:
        return JSONResponse({"detail": "the key index is loading"}, status_code=503)
    if api is not None and api not in request.app.state.settings.jobmeter_apis:
        return JSONResponse({"detail": f"unknown API surface {api!r}"}, status_code=422)
    secret = bearer(request)
    found = index.check(secret, api=api) if secret else None
    if found is None:
        return JSONResponse({"detail": "unknown API key"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    headers = {"Retry-After": str(found.retry_after)} if found.retry_after is not None else None
    return JSONResponse(found.as_json(), status_code=STATUS.get(found.state, 403), headers=headers)


class NewKey(BaseModel):
    account_id: AccountId


class Revocation(BaseModel):
    reason: str = Field(default="revoked by an operator", min_length=1, max_length=500)


class Key(BaseModel):
    """A key as operators see it: never its secret."""

    key_id: str
    account_id: str
    prefix: str = Field(description="The secret's first characters, to tell keys apart.")
    state: Literal["active", "revoked"]
    suspended: bool = Field(description="Whether any source holds the key's account (dunning, an empty balance, "
                                        "a usage cap).")
    suspended_reason: str | None = Field(description="Every holding source's reason: `source: reason; ...`.")
    held_by: list[HoldSource] = Field(default_factory=list, description="The sources holding the account.")
    issued_at: Timestamp
    revoked_at: Timestamp | None
    revoke_reason: str | None


class IssuedKey(BaseModel):
    key: str = Field(description="The secret, in this answer only: it is stored nowhere.")
    key_id: str
    prefix: str
    account_id: str
    state: Literal["active", "issuing"] = Field(description="`issuing` if the key store had not applied it yet.")


class RotatedKey(IssuedKey):
    revoked: Key = Field(description="The key it replaces, now revoked.")


def _refused(error: KeyCommandError) -> HTTPException:
    return HTTPException(404 if str(error).startswith("no ") else 409, detail=str(error))


@admin.post("/v1/keys", status_code=201, responses=problems(400, 404, 413))
async def new_key(body: NewKey, request: Request) -> IssuedKey:
    """Issue a key for an account. The secret is in `key`, in this response only."""
    try:
        return IssuedKey.model_validate((await create_key(request.app.state.runtime.res, body.account_id)).as_json())
    except KeyCommandError as error:
        raise _refused(error) from None


@admin.get("/v1/keys")
async def keys(request: Request, account_id: AccountId | None = None) -> list[Key]:
    return [Key.model_validate(k) for k in await list_keys(request.app.state.runtime.res, account_id)]


@admin.post("/v1/keys/{key_id}/revoke", responses=problems(400, 404, 409, 413))
async def revoke(key_id: KeyId, request: Request, body: Revocation | None = None) -> Key:
    try:
        return Key.model_validate(
            await revoke_key(request.app.state.runtime.res, key_id, (body or Revocation()).reason)
        )
    except KeyCommandError as error:
        raise _refused(error) from None


@admin.post("/v1/keys/{key_id}/rotate", status_code=201, responses=problems(404, 409))
async def rotate(key_id: KeyId, request: Request) -> RotatedKey:
    """Issue a new key for the same account and revoke this one; the new secret is in `key`."""
    try:
        new, old = await rotate_key(request.app.state.runtime.res, key_id)
    except KeyCommandError as error:
        raise _refused(error) from None
    return RotatedKey.model_validate({**new.as_json(), "revoked": old})


router.include_router(admin)
