"""`jobmeter run all`: one command, one HTTP port, a worker process per consumer, whose health `/healthz` reports;
a worker that dies is started again; SIGTERM stops every worker before the command exits (none is left behind).
A worker dying with a SIGKILLed supervisor: tests/unit/test_worker_health.py."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobmeter.settings import Settings
from services.devtools.bench.engine_procs import children_of, service_of
from services.devtools.chaos.processes import ServiceProcess
from services.devtools.sandbox import service_env
from services.engine.runtime import PROJECTION_SERVICES
from services.platform.serving import free_port
from tests.integration.helpers import ADMIN, INGEST, eventually, fetchval, job

pytestmark = pytest.mark.timeout(240)


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


async def test_run_all_supervises_a_worker_per_consumer(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    main = ServiceProcess("all", ["all", "--port", str(port)], service_env(settings), tmp_path)
    main.start()
    assert main.process is not None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

            async def health() -> tuple[int, dict[str, Any]]:
                try:
                    answer = await client.get("/healthz")
                except httpx.TransportError:
                    return 0, {}
                return answer.status_code, answer.json()

            # Healthy only once every worker runs and reports.
            _, body = await eventually(health, lambda h: h[0] == 200, timeout=90)
            assert {w["name"] for w in body["workers"]} == set(PROJECTION_SERVICES)
            assert all(w["problem"] is None and w["pid"] for w in body["workers"]), body
            workers = await eventually(lambda: _workers(main.process.pid),  # type: ignore[union-attr]
                                       lambda w: set(w) == set(PROJECTION_SERVICES), timeout=60)

            # The consumers do their work: a registered account's job reaches the ledger.
            created = await client.post("/v1/accounts", headers=ADMIN, json={
                "account_id": "acct-1", "model": "subscription", "stripe_customer_id": "cus_1"})
            assert created.status_code in (201, 202), created.text
            sent = await client.post("/v1/jobs/completed", headers=INGEST, json=job("acct-1", "j-1"))
            assert sent.status_code == 202, sent.text
            await eventually(lambda: fetchval(settings, "SELECT count(*) FROM ledger.jobs"), lambda n: n == 1)

            # A worker killed outright is started again by `run all`.
            os.kill(workers["ledger"], signal.SIGKILL)
            again = await eventually(lambda: _workers(main.process.pid),  # type: ignore[union-attr]
                                     lambda w: "ledger" in w and w["ledger"] != workers["ledger"], timeout=30)
            _, body = await eventually(health, lambda h: h[0] == 200 and _ledger(h[1])["pid"] == again["ledger"],
                                       timeout=60)
            assert _ledger(body)["restarts"] == 1 and _ledger(body)["last_exit_code"] == -signal.SIGKILL
            sent = await client.post("/v1/jobs/completed", headers=INGEST, json=job("acct-1", "j-2"))
            assert sent.status_code == 202, sent.text
            await eventually(lambda: fetchval(settings, "SELECT count(*) FROM ledger.jobs"), lambda n: n == 2)

        main.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(main.process.wait, 60)
        assert code in (0, -signal.SIGTERM)
        # It waited for each worker to exit before it did: none is left, not even as a zombie.
        assert not [name for name, pid in again.items() if alive(pid)]
    finally:
        main.kill()


def _ledger(body: dict[str, Any]) -> dict[str, Any]:
    return next((w for w in body.get("workers", []) if w["name"] == "ledger"), {"pid": None})


async def _workers(pid: int) -> dict[str, int]:
    return {service_of(child): child for child in children_of(pid)}
