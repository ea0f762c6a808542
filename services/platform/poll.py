"""The one way background work runs: a pass repeated until cancelled, and a supervisor that restarts a dead worker.

A worker (the meter sender, the recharger, the outbox relay, …) is written as one pass that says whether it
found work. `poll` runs it again at once while it does, waits `idle` seconds when it did not, and backs off
exponentially while passes fail, so a server that is restarting is not hammered and a bug does not spin a core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from services.platform.transient import TRANSIENT

log = structlog.get_logger(__name__)

Pass = Callable[[], Awaitable[bool]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class PollPolicy:
    """How often a worker's pass runs: `idle` after a pass that found nothing, longer after failures in a row."""

    idle: float
    max_backoff: float = 30.0
    first_delay: float = 0.0  # a worker whose first pass should wait (a reconciler that lets the month settle)

    def pause(self, failures: int) -> float:
        """Seconds to wait before the next pass, after `failures` failed passes in a row (0: it just went fine)."""
        if failures <= 0:
            return self.idle
        # Bounded by max_backoff even when idle is longer: an hourly worker whose pass failed tries again soon.
        backoff: float = max(self.idle, 0.05) * 2.0**failures
        return min(backoff, self.max_backoff)


async def poll(name: str, one_pass: Pass, policy: PollPolicy, *, sleep: Sleep = asyncio.sleep) -> None:
    """Run `one_pass` until cancelled. A pass that fails is logged (a warning for a server out of reach, an error
    for anything else) and retried after the back-off: what it had claimed is leased or unsent, so it is safe."""
    failures = 0
    if policy.first_delay:
        await sleep(policy.first_delay)
    while True:
        try:
            busy = await one_pass()
            failures = 0
        except asyncio.CancelledError:
            raise
        except TRANSIENT as error:
            failures += 1
            busy = False
            log.warning("worker pass failed, retrying", worker=name, error=str(error), failures=failures)
        except Exception as error:  # a bug in one pass must not stop the worker for good
            failures += 1
            busy = False
            log.error("worker pass failed", worker=name, error=str(error), error_type=type(error).__name__,
                      failures=failures)
        if busy:
            await sleep(0)  # let the consumers in this process run between two busy passes
        else:
            await sleep(policy.pause(failures))


async def supervised(name: str, start: Callable[[], Coroutine[Any, Any, None]], *, pause: float = 1.0) -> None:
    """Keep a background worker running: one that dies of a bug is logged and started again after a pause,
    instead of leaving its outbox unsent while the consumers carry on as if all were well."""
    while True:
        try:
            await start()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background worker failed; restarting", worker=name, pause_seconds=pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 60.0)
