"""The engine and the sample gateway, served over HTTP inside this event loop for the demo.

The engine is the HTTP app with every consumer (`create_app(settings, PROJECTION_SERVICES)`); the gateway asks it
about keys over HTTP, as a user's gateway would. `overrides` are the demo's settings: short meter windows and polls
so a run finishes in a minute or two, and the Pro catalog IDs (stripe-mock accepts any).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI

from jobmeter.settings import Settings
from services.engine.runtime import PROJECTION_SERVICES
from services.gateway.sample_app import running_gateway
from services.http.app import create_app
from services.platform.resources import Resources
from services.platform.serving import free_port, serving

T = TypeVar("T")
# Short meter windows, so the summary can wait until Stripe was sent every closed one.
METER_WINDOW_SECONDS = 5


def overrides() -> dict[str, Any]:
    return {
        "jobmeter_partitions": 3,
        "jobmeter_batch_timeout_ms": 50,
        "jobmeter_meter_window_seconds": METER_WINDOW_SECONDS,
        "jobmeter_meter_lateness_seconds": 1.0,
        "jobmeter_meter_poll_seconds": 0.5,
        "jobmeter_payg_poll_seconds": 0.2,
        "stripe_pro_price_id": "price_demo_pro_monthly",
        "stripe_pro_annual_price_id": "price_demo_pro_annual",
        "stripe_metered_overage_price_id": "price_demo_overage",
    }


# Shorter than the servers' idle keep-alive (uvicorn: 5 s, httpx's own default too): a connection idle that long
# may be closed by the server just as the client reuses it, which fails the request with a ReadError.
KEEPALIVE = 2.0


@dataclass
class DemoEngine:
    settings: Settings
    app: FastAPI
    url: str  # the engine: API, webhooks, key check, console
    gateway_url: str  # the sample gateway in front of the four toy APIs

    @property
    def res(self) -> Resources:
        res: Resources = self.app.state.runtime.res
        return res

    def admin(self) -> httpx.AsyncClient:
        token = self.settings.jobmeter_admin_token.get_secret_value()
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30,
                                 limits=httpx.Limits(keepalive_expiry=KEEPALIVE))

    def gateway(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=KEEPALIVE)
        return httpx.AsyncClient(base_url=self.gateway_url, timeout=30, limits=limits)


@asynccontextmanager
async def demo_engine(settings: Settings, *, port: int | None = None,
                      async_seconds: float = 0.3) -> AsyncIterator[DemoEngine]:
    """Serve the engine on `port` (a free one if None) and the gateway on a free port, until the block ends."""
    app = create_app(settings, list(PROJECTION_SERVICES))
    async with serving(app, port=port) as url, running_gateway(
        settings, port=free_port(), jobmeter_url=url, async_seconds=async_seconds
    ) as gateway_url:
        yield DemoEngine(settings, app, url, gateway_url)


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, timeout: float,
                     every: float = 0.2) -> tuple[T, bool]:
    """Probe until `done` holds or `timeout` passes: the last value, and whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return value, True
        if time.monotonic() > deadline:
            return value, False
        await asyncio.sleep(every)
