"""The security pass, as tests: every route authenticated unless it is public on purpose, and no secret in a
log line. (Constant-time comparisons, hashed keys and signatures have their own tests: see README.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from jobmeter.logs import configure_logging
from jobmeter.settings import Settings
from services.http.app import create_app
from tests.integration.helpers import client_for, job

pytestmark = pytest.mark.integration

# Public on purpose, each with its own guard (or none needed): docs, health, metrics (no account data in
# labels), the Stripe webhook (its signature), the key check (the key itself), the console's login and assets.
PUBLIC = {
    "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/healthz", "/metrics", "/webhooks/stripe",
    "/v1/keys/check", "/console/login", "/console/static/{name}",
}


class ServedRoute(Protocol):
    """One route as FastAPI serves it from an included router: the prefixes of every include applied."""

    @property
    def original_route(self) -> BaseRoute: ...
    @property
    def path(self) -> str: ...
    @property
    def methods(self) -> set[str]: ...


@runtime_checkable
class IncludedRouter(Protocol):
    """FastAPI's lazily included router (a private class), nested includes and all."""

    def effective_route_contexts(self) -> Iterator[ServedRoute]: ...


def routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    for route in app.routes:
        if isinstance(route, APIRoute):
            for method in sorted(route.methods or ()):
                yield method, route.path
        elif isinstance(route, IncludedRouter):
            for served in route.effective_route_contexts():
                if isinstance(served.original_route, APIRoute):
                    for method in sorted(served.methods):
                        yield method, served.path


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "acme", path)


async def test_every_non_public_route_refuses_without_credentials(settings: Settings) -> None:
    app = create_app(settings)
    checked = 0
    async with client_for(app) as client:
        for method, path in routes(app):
            if path in PUBLIC:
                continue
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": "jobmeter_session=forged"}):
                response = await client.request(method, concrete(path), headers=headers, follow_redirects=False)
                refused = response.status_code in (401, 403) or (
                    response.status_code in (302, 303) and "/console/login" in response.headers.get("location", "")
                )
                assert refused, (method, path, headers, response.status_code, response.text[:200])
            checked += 1
    assert checked >= 30  # the admin API and the whole console


async def test_no_secret_reaches_a_log_line(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG")
    secrets = {
        settings.jobmeter_ingest_token.get_secret_value(), settings.jobmeter_admin_token.get_secret_value(),
        settings.stripe_secret_key.get_secret_value(), settings.stripe_webhook_secret.get_secret_value(),
    }
    try:
        async with client_for(create_app(settings, consumers=["accounts", "keys"])) as client:
            admin = {"Authorization": f"Bearer {settings.jobmeter_admin_token.get_secret_value()}"}
            ingest = {"Authorization": f"Bearer {settings.jobmeter_ingest_token.get_secret_value()}"}
            await client.post("/v1/accounts", json={"account_id": "acme", "model": "subscription"}, headers=admin)
            created = await client.post("/v1/keys", json={"account_id": "acme"}, headers=admin)
            assert created.status_code in (200, 201), created.text
            secrets.add(created.json()["key"])
            await client.post("/v1/jobs/completed", json=[job("acme", "1"), {"api": "bad"}], headers=ingest)
            await client.get("/v1/keys/check", headers={"Authorization": f"Bearer {created.json()['key']}"})
            await client.post("/webhooks/stripe", content=json.dumps({"id": "evt_1"}),
                              headers={"Stripe-Signature": "t=1,v1=deadbeef"})
    finally:
        configure_logging("INFO")
    output = capsys.readouterr()
    logged = output.out + output.err
    assert logged, "the scenario logged nothing: the check would prove nothing"
    for secret in secrets:
        assert secret not in logged


def test_credential_looking_fields_are_masked() -> None:
    from jobmeter.logs import mask_secrets

    masked = mask_secrets(None, "info", {"event": "x", "api_key": "k", "Authorization": "Bearer t",
                                         "card_number": "4242", "account_id": "acme"})
    assert masked == {"event": "x", "api_key": "***", "Authorization": "***", "card_number": "***",
                      "account_id": "acme"}
