"""A running process: its resources, its consumers, and the one place they are wired together.

Subscribers are declared on the broker before start (so AsyncAPI can describe them without a database);
what they need at call time (the pool, the publisher) is opened when the process starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
from faststream.kafka import KafkaBroker

from events.topics import Topics
from jobmeter.memory import tune_for_batches
from jobmeter.settings import Settings
from projections.catalog import PROJECTIONS
from projections.fold import Folder
from services.engine.settings_check import check
from services.engine.stores import STORES
from services.keys.cap_clock import run_cap_clock
from services.keys.grace_clock import run_key_lifecycle_workers
from services.meter.sender import run_meter_sender
from services.payg.reconciler import run_payg_workers
from services.platform.consumers import group_id, mount_projection
from services.platform.poll import supervised
from services.platform.relay import run_relay
from services.platform.resources import Resources, open_resources
from services.rapidapi.reconcile import run_rapidapi_reconciler
from services.webhooks.workers import run_webhook_workers

log = structlog.get_logger(__name__)

# Workers that run beside a projection's consumer, by projection name: they send what its fold recorded.
PROJECTION_WORKERS: dict[str, Callable[[Resources, str], Coroutine[Any, Any, None]]] = {
    "meter": run_meter_sender,
    "key-lifecycle": run_key_lifecycle_workers,
    "payg": run_payg_workers,
    "rapidapi": run_rapidapi_reconciler,
    "caps": run_cap_clock,
    "webhooks": run_webhook_workers,  # the sender, the alert mailer, the forecast watcher
}

# Which projection each consumer service folds; `jobmeter run NAME` and docker-compose use these names.
PROJECTION_SERVICES: dict[str, str] = {
    "ledger": "ledger",
    "accounts": "accounts",
    "meter": "meter",
    "subscriptions": "subscriptions",
    "normalizer": "normalizer",
    "rapidapi": "rapidapi",
    "keys": "keys",
    "key-lifecycle": "key-lifecycle",
    "payg": "payg",
    "caps": "caps",
    "webhooks": "webhooks",
}


@dataclass
class Runtime:
    settings: Settings
    broker: KafkaBroker
    resources: Resources | None = None
    folders: dict[str, Folder] = field(default_factory=dict)
    _on_open: list[Callable[[Resources], None]] = field(default_factory=list)
    # Non-projection work beside the consumers (e.g. the key check's in-memory index): entered once the
    # resources are open, before the broker starts; left after it stopped.
    extras: list[Callable[[Resources], AbstractAsyncContextManager[None]]] = field(default_factory=list)
    # Background work of this process beside the projections' (e.g. the HTTP app's receipt retention),
    # supervised like theirs.
    workers: list[tuple[str, Callable[[Resources], Coroutine[Any, Any, None]]]] = field(default_factory=list)

    def folder(self, projection: str) -> Folder:
        try:
            return self.folders[projection]
        except KeyError:
            raise RuntimeError(f"{projection} is not running in this process (is the runtime open?)") from None

    @property
    def res(self) -> Resources:
        if self.resources is None:
            raise RuntimeError("the runtime is not open")
        return self.resources

    def mount(self, service: str) -> None:
        projection = PROJECTIONS[PROJECTION_SERVICES[service]].configured(self.settings)
        s = self.settings
        mount_projection(
            self.broker,
            lambda: self.folder(projection.name),
            topics=[self._topic(t) for t in projection.topics],
            group=group_id(s.jobmeter_topic_prefix, projection.name),
            max_records=s.jobmeter_batch_max_records,
            timeout_ms=s.jobmeter_batch_timeout_ms,
            title=projection.name,
            instance_id=s.jobmeter_instance_id,
        )
        self._on_open.append(
            lambda res: self.folders.__setitem__(
                projection.name, Folder(projection, res.pool_for(projection.name), dead_letters=res.dead_letter)
            )
        )

    def _background(self) -> list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]]:
        """The relays of projections that emit, the workers that send what folds recorded, and this process's own."""
        res = self.res
        work: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        for name, f in self.folders.items():
            if f.projection.emits:
                work.append((f"{name} relay", partial(run_relay, f.pool, f.schema, res.publisher)))
            if name in PROJECTION_WORKERS:
                work.append((f"{name} worker", partial(PROJECTION_WORKERS[name], res, f.schema)))
        return work + [(name, partial(start, res)) for name, start in self.workers]

    def _topic(self, logical: str) -> str:
        return Topics(self.settings.jobmeter_topic_prefix).name(logical)

    @asynccontextmanager
    async def running(self, *, producer: str) -> AsyncIterator[Runtime]:
        """Open the resources, start the consumers; stop and close everything on the way out."""
        async with AsyncExitStack() as stack:
            self.resources = await stack.enter_async_context(
                open_resources(self.settings, producer=producer, stores=STORES)
            )
            tune_for_batches()
            for hook in self._on_open:
                hook(self.resources)
            for extra in self.extras:
                await stack.enter_async_context(extra(self.resources))
            await self.broker.start()
            stack.push_async_callback(self.broker.stop)
            tasks = [asyncio.create_task(supervised(name, start)) for name, start in self._background()]
            stack.push_async_callback(_cancel, tasks)
            yield self
        self.resources = None
        self.folders.clear()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def build_runtime(settings: Settings, services: list[str]) -> Runtime:
    check(settings)  # every process refuses a bad configuration before it reads or writes anything
    unknown = [s for s in services if s not in PROJECTION_SERVICES]
    if unknown:
        raise ValueError(f"unknown consumer(s) {', '.join(unknown)}; known: {', '.join(PROJECTION_SERVICES)}")
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers.split(","),  # FastStream reads one string as one address, not a list
        client_id=f"jobmeter-{'-'.join(services) or 'http'}",
        logger=logging.getLogger("jobmeter.broker"),  # FastStream's per-message lines, quiet by default
    )
    runtime = Runtime(settings, broker)
    for service in services:
        runtime.mount(service)
    return runtime
