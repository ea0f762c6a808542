"""The console's door: nothing without a session, no action without this origin and the session's CSRF token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from jobmeter.settings import DEVELOPMENT_SECRETS, Settings
from services.console.session import COOKIE
from services.http.app import create_app
from tests.integration.helpers import client_for, fetchval

pytestmark = pytest.mark.integration

ORIGIN = {"Origin": "http://jobmeter.test"}
ADMIN_TOKEN = "dev-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PAGES = ["/console", "/console/accounts", "/console/accounts/acme", "/console/stripe", "/console/payg",
         "/console/webhooks", "/console/live", "/console/rapidapi", "/console/projections"]
ACTIONS = ["/console/accounts/acme/simulate-payment-failure", "/console/accounts/acme/simulate-payment-recovery",
           "/console/accounts/acme/checkout", "/console/accounts/acme/topup",
           "/console/projections/usage-ledger/rebuild", "/console/logout"]


async def log_in(client: httpx.AsyncClient, token: str = ADMIN_TOKEN) -> httpx.Response:
    return await client.post("/console/login", data={"token": token}, headers=ORIGIN)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def test_no_page_and_no_action_without_a_session(settings: Settings) -> None:
    async with client_for(create_app(settings)) as client:
        for page in PAGES:
            response = await client.get(page)
            assert response.status_code == 303, page
            assert response.headers["location"] == "/console/login"
            assert "script-src 'self'" in response.headers["content-security-policy"]
        for api in ("/console/api/live", "/console/api/accounts/acme"):
            assert (await client.get(api)).status_code == 401, api
        for action in ACTIONS:
            form = await client.post(action, data={"csrf": "x"}, headers=ORIGIN)
            script = await client.post(action, data={"csrf": "x"}, headers={**ORIGIN, "Accept": "application/json"})
            assert (form.status_code, form.headers.get("location")) == (303, "/console/login"), action
            assert script.status_code == 401, action
        # A forged or stale cookie is no session either.
        client.cookies.set(COOKIE, "eyJzaWQiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ.deadbeef", path="/console")
        assert (await client.get("/console/accounts")).status_code == 303
        login = await client.get("/console/login")
        assert login.status_code == 200
        assert 'type="password"' in login.text


async def test_login_sets_a_signed_strict_httponly_cookie_not_the_token(settings: Settings) -> None:
    async with client_for(create_app(settings)) as client:
        wrong = await log_in(client, "not-it")
        assert wrong.status_code == 401
        assert COOKIE not in wrong.cookies
        ok = await log_in(client)
        assert ok.status_code == 303
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert "dev-admin-token" not in cookie
        page = await client.get("/console/accounts")
        assert page.status_code == 200
        assert "<h1>Accounts</h1>" in page.text
        # Changing the admin token ends every session signed with the old one.
        other = settings.model_copy(update={"jobmeter_admin_token": SecretStr("rotated-token")})
        async with client_for(create_app(other)) as rotated:
            rotated.cookies.set(COOKIE, client.cookies[COOKIE], path="/console")
            assert (await rotated.get("/console/accounts")).status_code == 303


async def test_actions_need_the_sessions_csrf_token_and_this_origin(settings: Settings) -> None:
    async with client_for(create_app(settings, consumers=["accounts"])) as client:
        created = await client.post(
            "/v1/accounts", json={"account_id": "acme", "model": "subscription", "stripe_customer_id": "cus_ACME"},
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text
        await log_in(client)
        token = csrf_of((await client.get("/console/accounts/acme")).text)
        action = "/console/accounts/acme/simulate-payment-failure"

        missing = await client.post(action, data={}, headers=ORIGIN)
        wrong = await client.post(action, data={"csrf": "0" * 64}, headers=ORIGIN)
        assert (missing.status_code, wrong.status_code) == (403, 403)
        assert "CSRF" in wrong.text

        foreign = await client.post(action, data={"csrf": token}, headers={"Origin": "https://evil.example"})
        foreign_referer = await client.post(
            action, data={"csrf": token}, headers={"Referer": "https://evil.example/console/accounts/acme"}
        )
        no_origin = await client.post(action, data={"csrf": token})
        assert (foreign.status_code, foreign_referer.status_code, no_origin.status_code) == (403, 403, 403)
        assert await fetchval(settings, "SELECT count(*) FROM webhooks.log") == 0

        # Another session's token is not this session's token.
        async with client_for(create_app(settings)) as second:
            await log_in(second)
            theirs = csrf_of((await second.get("/console/accounts")).text)
        assert theirs != token
        assert (await client.post(action, data={"csrf": theirs}, headers=ORIGIN)).status_code == 403

        same_referer = {"Referer": "http://jobmeter.test/console/accounts/acme"}
        done = await client.post(action, data={"csrf": token}, headers=same_referer)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/console/accounts/acme?notice=failure-sent"
        assert await fetchval(settings, "SELECT count(*) FROM webhooks.log WHERE account_id = 'acme'") == 1


async def test_unreachable_postgres_is_a_clear_panel_not_a_trace(settings: Settings) -> None:
    app = create_app(settings)
    async with client_for(app) as client:
        await log_in(client)
        await app.state.runtime.res.pool.close()  # the database goes away under a running console
        page = await client.get("/console/accounts")
        assert page.status_code == 503
        assert "Postgres is unavailable" in page.text
        assert "Traceback" not in page.text
        api = await client.get("/console/api/live")
        assert api.status_code == 503
        assert api.json()["detail"]


async def test_behind_a_proxy_the_configured_origin_is_the_one_that_counts(settings: Settings) -> None:
    public = settings.model_copy(update={"jobmeter_console_origin": "https://billing.example.com"})
    async with client_for(create_app(public)) as client:
        # The app sees http://jobmeter.test; the browser, and so its Origin header, says the public address.
        login = await client.post("/console/login", data={"token": ADMIN_TOKEN},
                                  headers={"Origin": "https://billing.example.com"})
        assert login.status_code == 303
        assert "Secure" in login.headers["set-cookie"]
        refused = await client.post("/console/login", data={"token": ADMIN_TOKEN}, headers=ORIGIN)
        assert refused.status_code == 403


@asynccontextmanager
async def clients_from(app: FastAPI, *addresses: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """The app with its lifespan running, and one in-process client per client address."""
    async with app.router.lifespan_context(app), AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="http://jobmeter.test"))
            for address in addresses
        ]


async def test_a_burst_of_failed_logins_blocks_that_address_only(settings: Settings) -> None:
    assert (settings.jobmeter_login_max_failures, settings.jobmeter_login_window_seconds) == (5, 60)
    async with clients_from(create_app(settings), "198.51.100.7", "203.0.113.9") as (guesser, other):
        for _ in range(5):
            assert (await log_in(guesser, "guess")).status_code == 401
        blocked = await log_in(guesser, "guess")
        assert blocked.status_code == 429
        assert blocked.headers["retry-after"].isdigit() and 1 <= int(blocked.headers["retry-after"]) <= 12
        assert "Too many failed logins" in blocked.text
        # Until a try is back, the right token is refused too: the guesser cannot tell a hit from a miss.
        right = await log_in(guesser)
        assert (right.status_code, COOKIE in right.cookies) == (429, False)
        as_script = await guesser.post("/console/login", data={"token": ADMIN_TOKEN},
                                       headers={**ORIGIN, "Accept": "application/json"})
        assert as_script.status_code == 429 and "retry-after" in as_script.headers
        assert "try again" in as_script.json()["detail"]
        # Another address is not held back by this one's failures.
        assert (await log_in(other, "typo")).status_code == 401
        assert (await log_in(other)).status_code == 303


async def test_a_new_session_key_ends_every_session(settings: Settings) -> None:
    first = settings.model_copy(update={"jobmeter_console_session_key": SecretStr("session-key-1")})
    second = settings.model_copy(update={"jobmeter_console_session_key": SecretStr("session-key-2")})
    async with client_for(create_app(first)) as client:
        assert (await log_in(client)).status_code == 303
        assert (await client.get("/console/accounts")).status_code == 200
        cookie = client.cookies[COOKIE]
    for rotated_settings, kept in ((first, True), (second, False), (settings, False)):
        async with client_for(create_app(rotated_settings)) as rotated:
            rotated.cookies.set(COOKIE, cookie, path="/console")
            page = await rotated.get("/console/accounts")
            api = await rotated.get("/console/api/live")
            if kept:
                assert (page.status_code, api.status_code) == (200, 200)
            else:
                assert (page.status_code, page.headers["location"], api.status_code) == (303, "/console/login", 401)


async def test_development_says_so_on_every_page(settings: Settings) -> None:
    warning = "development mode, with published secrets"
    async with client_for(create_app(settings)) as client:
        assert warning in (await client.get("/console/login")).text
    secrets = {field: SecretStr(f"{field}-of-this-test-only") for field in DEVELOPMENT_SECRETS}
    production = settings.model_copy(update={"jobmeter_env": "production", **secrets})
    async with client_for(create_app(production)) as client:
        assert warning not in (await client.get("/console/login")).text
