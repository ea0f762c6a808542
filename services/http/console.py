"""`/console`: the operator console. Server-rendered pages, a little plain JavaScript, no front-end build.

Every page and action needs a session, made by logging in with the admin token. Every action is a POST that
must come from this origin (Origin, else Referer) and carry the session's CSRF token. Every response carries
a strict Content-Security-Policy (no inline script). When Postgres, Kafka or Stripe cannot be reached, the
page says which and why, instead of a stack trace (see `services/console/web.py`).

This module holds the door (login, logout, the static files) and mounts the pages (`console_pages.py`) and the
actions (`console_actions.py`) under `/console`.
"""

from __future__ import annotations

import asyncio
import math

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from services.console.session import COOKIE, SESSION_SECONDS, new_session, token_matches
from services.console.web import (
    HERE,
    STATIC,
    ConsoleRoute,
    check_origin,
    error_page,
    form,
    guarded_form,
    key_of,
    own_origin,
    render,
    session_of,
    settings_of,
    wants_json,
)
from services.http import console_actions, console_pages
from services.platform.rate_limit import BucketsByKey

router = APIRouter(prefix="/console", tags=["console"], route_class=ConsoleRoute, include_in_schema=False)


# -- login -----------------------------------------------------------------------------------------------------

@router.get("/login")
async def login_page(request: Request) -> Response:
    return render(request, "login.html", section="login", failed=False)


def login_failures(request: Request) -> BucketsByKey:
    """Failed logins per client address: a burst of max_failures, then one more each window / max_failures."""
    state = request.app.state
    if getattr(state, "console_login_failures", None) is None:
        settings = settings_of(request)
        rate = settings.jobmeter_login_max_failures / settings.jobmeter_login_window_seconds
        state.console_login_failures = BucketsByKey(rate, burst=settings.jobmeter_login_max_failures)
    failures: BucketsByKey = state.console_login_failures
    return failures


@router.post("/login")
async def login(request: Request) -> Response:
    check_origin(request)
    fields = await form(request)
    # No await from the check to the spend: concurrent guesses from one address cannot share a token.
    failures, address = login_failures(request), request.client.host if request.client else "unknown"
    wait = failures.wait_time(address)
    if wait > 0:  # right or wrong, no token is checked until the address has a try back
        seconds = max(1, math.ceil(wait))
        if wants_json(request):
            response = error_page(request, 429, "Too many failed logins",
                                  f"Too many failed logins from this address: try again in {seconds} s.")
        else:
            response = render(request, "login.html", status=429, section="login", failed=False, throttled=seconds)
        response.headers["Retry-After"] = str(seconds)
        return response
    expected = settings_of(request).jobmeter_admin_token.get_secret_value()
    if not token_matches(fields.get("token", ""), expected):
        failures.spend(address)
        await asyncio.sleep(0.2)  # a little friction for each guess
        return render(request, "login.html", status=401, section="login", failed=True)
    response = RedirectResponse("/console/accounts", status_code=303)
    response.set_cookie(
        COOKIE, new_session(key_of(request)), max_age=SESSION_SECONDS, path="/console", httponly=True,
        samesite="strict", secure=own_origin(request).startswith("https://"),
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await guarded_form(request)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    # Public on purpose: CSS and JS hold nothing secret, and the login page needs them.
    if name not in STATIC:
        return Response("not found", status_code=404, media_type="text/plain")
    body = (HERE / "static" / name).read_bytes()
    return Response(body, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    session_of(request)
    return RedirectResponse("/console/accounts", status_code=303)


router.include_router(console_pages.router)
router.include_router(console_actions.router)
