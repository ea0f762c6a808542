"""`run all`: the HTTP app in this process, a worker process per consumer.

One Python process folds on one core; measured with `jobmeter bench engine`, `run all` in one process was bound to
it while the machine's other cores idled. Each worker is `jobmeter run NAME`, so every guarantee (positions in the
fold's transaction, the idempotent producer, acks=all) is the one that command already gives. The supervisor's
`/healthz` answers for the workers too (services/engine/health.py), and a worker never outlives its supervisor.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import structlog
import uvicorn

from jobmeter.settings import Settings
from services.engine.health import WorkerHealth, judge, read_report
from services.engine.runtime import PROJECTION_SERVICES
from services.http.app import create_app
from services.platform.children import dies_with_parent

log = structlog.get_logger(__name__)
RESTART_BACKOFF = (1.0, 30.0)  # seconds before a worker that exited is started again: first, at most
# So `-m services.cli.main` in a worker imports what this process runs, wherever it was started from.
ROOT = str(Path(__file__).resolve().parents[2])


class Worker:
    def __init__(self, name: str, argv: list[str], health_file: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.health_file = health_file
        self.process: asyncio.subprocess.Process | None = None
        self.stopping = False
        self.restarts = 0
        self.last_exit_code: int | None = None
        self.started_at = time.time()

    @classmethod
    def consumer(cls, name: str, health_dir: Path) -> Worker:
        health_file = health_dir / f"{name}.json"
        return cls(name, [sys.executable, "-m", "services.cli.main", "run", name, "--health-file", str(health_file)],
                   health_file)

    async def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
        self.started_at = time.time()
        self.process = await asyncio.create_subprocess_exec(*self.argv, env=env, preexec_fn=dies_with_parent())

    async def keep_running(self) -> None:
        """Like `restart: unless-stopped`: a worker that exits on its own (Postgres down at its start, a crash) is
        started again, after a back-off that doubles while it keeps failing."""
        backoff = RESTART_BACKOFF[0]
        while not self.stopping:
            if self.process is None:
                await self.start()
            assert self.process is not None
            started = asyncio.get_running_loop().time()
            self.last_exit_code = await self.process.wait()
            if self.stopping:
                return
            if asyncio.get_running_loop().time() - started > 60:
                backoff = RESTART_BACKOFF[0]
            log.warning("worker exited; starting it again", worker=self.name, code=self.last_exit_code,
                        after_seconds=backoff)
            self.process = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF[1])
            self.restarts += 1

    def health(self, now: float) -> WorkerHealth:
        running = self.process is not None and self.process.returncode is None
        pid = self.process.pid if running and self.process is not None else None
        report = read_report(self.health_file) if self.health_file is not None else None
        return judge(self.name, pid, self.restarts, self.last_exit_code, report, now, self.started_at)

    async def stop(self, grace: float = 20) -> None:
        self.stopping = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
            await process.wait()


class _SupervisingServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM once it has served; its workers must be stopped before that, so here."""

    workers: list[Worker]

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets)
        finally:
            await asyncio.gather(*(w.stop() for w in self.workers))


async def supervise_all(settings: Settings, host: str, port: int) -> None:
    with tempfile.TemporaryDirectory(prefix="jobmeter-workers-") as health_dir:
        workers = [Worker.consumer(name, Path(health_dir)) for name in PROJECTION_SERVICES]
        app = create_app(settings, [])
        app.state.workers = lambda: [w.health(time.time()) for w in workers]
        server = _SupervisingServer(uvicorn.Config(app, host=host, port=port, log_config=None))
        server.workers = workers
        keepers = [asyncio.create_task(w.keep_running()) for w in workers]
        try:
            await server.serve()
        finally:
            await asyncio.gather(*(w.stop() for w in workers))
            for keeper in keepers:
                keeper.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)
