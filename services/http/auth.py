"""Bearer tokens for the ingest and admin routes, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import HTTPException, Request, status
from pydantic import SecretStr


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token.strip()


def token_matches(given: str | None, expected: SecretStr) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


def require_token(setting: str) -> Callable[[Request], None]:
    """A dependency that refuses the request with 401 unless it carries the token named by `setting`."""

    def check(request: Request) -> None:
        expected: SecretStr = getattr(request.app.state.settings, setting)
        if not token_matches(bearer(request), expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


require_ingest = require_token("jobmeter_ingest_token")
require_admin = require_token("jobmeter_admin_token")
