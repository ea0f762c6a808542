"""The console's own actions: simulated Stripe deliveries through the real bridge, and projection rebuilds."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from fastapi import FastAPI

from jobmeter.settings import Settings
from projections import replay
from projections.replay.shadow import ReplayError
from services.stripe_adapter import simulation
from services.stripe_adapter.fixtures import build_event, encode_event
from services.stripe_adapter.webhooks import sign

log = structlog.get_logger(__name__)


class SimulationRefused(ValueError):
    """The bridge did not take the simulated delivery; the message is its answer."""


class SimulationOff(Exception):
    """This deployment may not simulate (its Stripe key is live); the message says why."""


async def deliver(app: FastAPI, settings: Settings, event_type: str, customer_id: str, **kwargs: Any) -> str:
    """Sign a Stripe-shaped event as Stripe would and post it to `/webhooks/stripe` of this very app (in
    process), so it takes the production path: verification, the log, the bus, the key lifecycle.

    SimulationOff, before anything is built or posted, when STRIPE_SECRET_KEY is live."""
    refused = simulation.refusal(settings.stripe_secret_key.get_secret_value())
    if refused is not None:
        raise SimulationOff(refused)
    event = build_event(event_type, customer_id, event_id=simulation.simulated_event_id(simulation.CONSOLE_PREFIX),
                        **kwargs)
    body = encode_event(event)
    headers = {
        "Stripe-Signature": sign(body, settings.stripe_webhook_secret.get_secret_value(), timestamp=int(time.time())),
        "Content-Type": "application/json",
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.internal", timeout=30) as client:
        response = await client.post("/webhooks/stripe", content=body, headers=headers)
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text or response.reason_phrase
        raise SimulationRefused(f"the webhook bridge answered {response.status_code}: {detail}")
    return str(event["id"])


@dataclass
class Rebuild:
    """One rebuild started from the console, as far as this process knows."""

    projection: str
    started_at: datetime
    state: str = "running"  # running | swapped | differs | failed
    detail: str = ""
    done: int = 0
    total: int = 0
    finished_at: datetime | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Rebuilds:
    """Rebuilds run in the background of the HTTP process: rebuild, verify, and swap only when equal."""

    def __init__(self) -> None:
        self.by_projection: dict[str, Rebuild] = {}

    def start(self, settings: Settings, name: str) -> Rebuild:
        current = self.by_projection.get(name)
        if current is not None and current.state == "running":
            raise ReplayError(f"a rebuild of {name} started here is still running")
        job = Rebuild(name, datetime.now(UTC))
        job.task = asyncio.create_task(self._run(settings, job))
        self.by_projection[name] = job
        return job

    async def _run(self, settings: Settings, job: Rebuild) -> None:
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        try:
            # One replay session for the three steps: another operator's replay cannot slip in between.
            async with replay.replaying(settings, job.projection) as session:
                result = await session.rebuild(progress=progress)
                differences = await session.verify()
                if differences:
                    tables = ", ".join(d.table for d in differences)
                    job.state = "differs"
                    job.detail = f"the rebuild differs from live in {tables}; not swapped (see `jobmeter replay`)"
                else:
                    await session.swap()
                    job.state = "swapped"
                    job.detail = f"{result.records} records folded in {result.seconds:.1f}s, equal to live, swapped in"
        except Exception as error:  # shown to the operator, who started it
            log.warning("console rebuild failed", projection=job.projection, error=str(error))
            job.state = "failed"
            job.detail = str(error) or type(error).__name__
        finally:
            job.finished_at = datetime.now(UTC)

    async def close(self) -> None:
        tasks = [j.task for j in self.by_projection.values() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
