"""Bearer tokens for the ingest and admin routes, compared in constant time, before anything reads the request."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from pydantic import SecretStr


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token.strip()


def token_matches(given: str | None, expected: SecretStr) -> bool:
    # An unset token opens nothing, even where the start-up check was skipped (an app built by hand).
    if given is None or not expected.get_secret_value():
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


def checked_first(check: Callable[[Request], None]) -> type[APIRoute]:
    """A route class that runs `check` before the route does anything: a dependency would run only after FastAPI
    parsed the body, so a caller without a token would learn from a 400/422 how its body was judged."""

    class CheckedFirst(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def checked(request: Request) -> Response:
                check(request)
                return await handler(request)

            return checked

    return CheckedFirst


IngestRoute = checked_first(require_token("jobmeter_ingest_token"))
AdminRoute = checked_first(require_token("jobmeter_admin_token"))
