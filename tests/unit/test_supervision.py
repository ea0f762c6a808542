"""A background worker that dies of a bug is started again; one that is cancelled stays stopped."""

from __future__ import annotations

import asyncio

from services.runtime import supervised


async def test_a_failing_worker_is_restarted_until_it_finishes() -> None:
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("a bug")

    await asyncio.wait_for(supervised("flaky", flaky, pause=0.01), timeout=5)
    assert len(runs) == 3


async def test_cancellation_is_not_a_failure() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(supervised("forever", forever, pause=0.01))
    await started.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
