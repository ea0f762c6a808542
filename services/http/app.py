"""The HTTP app. `create_app` wires it to a runtime, which may also run consumers in the same process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from jobmeter.settings import Settings
from services.console.web import MAX_FORM_BYTES
from services.engine.runtime import build_runtime
from services.engine.stores import retained
from services.http import accounts, console, ingest, keys, ops, webhooks
from services.http import billing as billing_http
from services.http import caps as caps_http
from services.http import payg as payg_http
from services.http.limits import BodyLimits, BoundedBodies
from services.keys.index import mount_key_index
from services.ledger.admission import Admission, watch_lag
from services.platform.retention import keep_for_their_days

# What no request body here needs more than: JSON commands of a few fields.
DEFAULT_MAX_BODY_BYTES = 64 * 1024


def body_limits(settings: Settings) -> BodyLimits:
    return BodyLimits(
        default=DEFAULT_MAX_BODY_BYTES,
        paths={
            "/webhooks/stripe": webhooks.MAX_BODY_BYTES,
            "/v1/jobs/completed": settings.jobmeter_ingest_max_batch * ingest.MAX_ITEM_BYTES,
        },
        prefixes={"/console": MAX_FORM_BYTES},
    )


def create_app(settings: Settings, consumers: list[str] | None = None) -> FastAPI:
    runtime = build_runtime(settings, consumers or [])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.running(producer="jobmeter-http"):
            yield

    app = FastAPI(title="jobmeter", version="0.1.0", lifespan=lifespan)
    app.add_middleware(BoundedBodies, limits=body_limits(settings))
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.key_index = mount_key_index(runtime)
    runtime.workers.append(("retention", partial(keep_for_their_days, kept=retained(settings))))
    app.state.admission = Admission(settings.jobmeter_ingest_max_lag, settings.jobmeter_ingest_lag_interval_seconds)
    if settings.jobmeter_ingest_max_lag:
        runtime.workers.append(("admission", partial(watch_lag, admission=app.state.admission)))
    for module in (ingest, accounts, ops, webhooks, keys, console, payg_http, billing_http, caps_http):
        app.include_router(module.router)

    @app.exception_handler(RequestValidationError)
    async def readable_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        reasons = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()
        ]
        return JSONResponse({"detail": "invalid request", "errors": reasons}, status_code=422)

    return app
