"""API keys over HTTP: the gateway's key check (the key itself is the credential), and admin commands."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.http.auth import bearer, require_admin
from services.keys.commands import KeyCommandError, create_key, list_keys, revoke_key, rotate_key
from services.keys.index import KeyIndex

router = APIRouter(tags=["keys"])
admin = APIRouter(tags=["keys"], dependencies=[Depends(require_admin)])


@router.get("/v1/keys/check", responses={401: {}, 403: {}, 503: {}})
async def check_key(request: Request) -> JSONResponse:
    """200 `{account_id, key_id, state, billing_model}` for a working key; 401 unknown, 403 revoked or suspended.

    Answered from memory, without I/O: the index follows the key events as they reach Kafka."""
    index: KeyIndex = request.app.state.key_index
    if not index.ready:
        return JSONResponse({"detail": "the key index is loading"}, status_code=503)
    secret = bearer(request)
    found = index.check(secret) if secret else None
    if found is None:
        return JSONResponse({"detail": "unknown API key"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    return JSONResponse(found.as_json(), status_code=200 if found.state == "active" else 403)


class NewKey(BaseModel):
    account_id: str = Field(min_length=1)


class Revocation(BaseModel):
    reason: str = Field(default="revoked by an operator", min_length=1, max_length=500)


def _refused(error: KeyCommandError) -> HTTPException:
    return HTTPException(404 if str(error).startswith("no ") else 409, detail=str(error))


@admin.post("/v1/keys", status_code=201, responses={404: {}})
async def new_key(body: NewKey, request: Request) -> dict[str, Any]:
    """Issue a key for an account. The secret is in `key`, in this response only."""
    try:
        return (await create_key(request.app.state.runtime.res, body.account_id)).as_json()
    except KeyCommandError as error:
        raise _refused(error) from None


@admin.get("/v1/keys")
async def keys(request: Request, account_id: str | None = None) -> list[dict[str, Any]]:
    return await list_keys(request.app.state.runtime.res, account_id)


@admin.post("/v1/keys/{key_id}/revoke", responses={404: {}, 409: {}})
async def revoke(key_id: str, request: Request, body: Revocation | None = None) -> dict[str, Any]:
    try:
        return await revoke_key(request.app.state.runtime.res, key_id, (body or Revocation()).reason)
    except KeyCommandError as error:
        raise _refused(error) from None


@admin.post("/v1/keys/{key_id}/rotate", status_code=201, responses={404: {}, 409: {}})
async def rotate(key_id: str, request: Request) -> dict[str, Any]:
    """Issue a new key for the same account and revoke this one; the new secret is in `key`."""
    try:
        new, old = await rotate_key(request.app.state.runtime.res, key_id)
    except KeyCommandError as error:
        raise _refused(error) from None
    return {**new.as_json(), "revoked": old}


router.include_router(admin)
