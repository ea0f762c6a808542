"""`jobmeter run http --workers N`: N HTTP processes on one port, each a whole ingest (its own producer and pools);
one dying does not stop ingest, and it is started again."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from jobmeter.settings import Settings
from services.devtools.bench.engine_procs import children_of
from services.devtools.sandbox import http_child
from tests.integration.helpers import INGEST, job

pytestmark = pytest.mark.integration


def serving_processes(supervisor: int) -> list[int]:
    """uvicorn's worker processes (multiprocessing's spawned children), not its resource tracker."""
    return [pid for pid in children_of(supervisor)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


async def post_over_connections(url: str, label: str, connections: int = 6) -> list[int]:
    async def one(n: int) -> int:
        async with httpx.AsyncClient(base_url=url, headers=INGEST, timeout=60) as client:  # a connection each
            response = await client.post("/v1/jobs/completed", json=[job(f"acct-{n}", f"{label}-{n}-{i}")
                                                                      for i in range(50)])
            assert response.status_code == 202, response.text
            return int(response.json()["accepted"])
    return list(await asyncio.gather(*(one(n) for n in range(connections))))


async def serving_when(supervisor: int, ready: Callable[[list[int]], bool], seconds: float = 60) -> list[int]:
    for _ in range(int(seconds / 0.2)):
        if ready(found := serving_processes(supervisor)):
            return found
        await asyncio.sleep(0.2)
    return serving_processes(supervisor)


async def test_two_http_processes_share_the_port_and_one_dying_is_replaced(settings: Settings) -> None:
    async with http_child(settings, workers=2) as child:
        workers = await serving_when(child.pid, lambda found: len(found) == 2)
        assert len(workers) == 2
        assert await post_over_connections(child.url, "before") == [50] * 6

        os.kill(workers[0], signal.SIGKILL)
        assert await post_over_connections(child.url, "meanwhile") == [50] * 6  # the other one answers
        now = await serving_when(child.pid, lambda found: len(found) == 2 and workers[0] not in found)
        assert len(now) == 2 and workers[0] not in now and workers[1] in now
        assert await post_over_connections(child.url, "after") == [50] * 6
