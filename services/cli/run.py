"""`jobmeter run SERVICE`: one consumer, the HTTP app, or everything behind one command (`all`): the HTTP app in
this process and every consumer in a worker process of its own, exactly as `run NAME` runs it (or, with
`--one-process`, every consumer inside the HTTP app's process)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import structlog
import typer
import uvicorn

from jobmeter.settings import Settings, get_settings
from services.engine.runtime import PROJECTION_SERVICES, build_runtime
from services.gateway.sample_app import serve_gateway
from services.http.app import create_app

SERVICES = ["all", "http", "gateway", *PROJECTION_SERVICES]


def run(
    service: str = typer.Argument(..., help=f"one of: {', '.join(SERVICES)}"),
    port: int = typer.Option(None, help="HTTP port for `http` and `all` (default JOBMETER_HTTP_PORT, 8080)"),
    host: str = typer.Option("127.0.0.1", help="HTTP address to bind"),
    engine_url: str = typer.Option(None, help="`gateway` only: where jobmeter's HTTP app answers the key check"),
    one_process: bool = typer.Option(
        False, "--one-process",
        help="`all` only: every consumer inside the HTTP app's process (one core) instead of a worker process each",
    ),
) -> None:
    """Run one service in the foreground until Ctrl-C or SIGTERM."""
    if service not in SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; choose from: {', '.join(SERVICES)}")
    settings = get_settings()
    if service == "gateway":
        serve_gateway(settings, port or 8090, host=host, jobmeter_url=engine_url)
    elif service == "all" and not one_process:
        asyncio.run(_supervise_all(settings, host, port or settings.jobmeter_http_port))
    elif service in ("http", "all"):
        consumers = list(PROJECTION_SERVICES) if service == "all" else []
        app = create_app(settings, consumers)
        uvicorn.run(app, host=host, port=port or settings.jobmeter_http_port, log_config=None)
    else:
        asyncio.run(_consume(settings, service))


async def _consume(settings: Settings, service: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with build_runtime(settings, [service]).running(producer=f"jobmeter-{service}"):
        await stop.wait()


# --- `run all`: the HTTP app here, a worker process per consumer ---------------------------------------------
# One Python process folds on one core; measured with `jobmeter bench engine`, `run all` in one process was bound
# to it while the machine's other cores idled. Each worker is `jobmeter run NAME`, so every guarantee (positions in
# the fold's transaction, the idempotent producer, acks=all) is the one that command already gives.

log = structlog.get_logger(__name__)
RESTART_BACKOFF = (1.0, 30.0)  # seconds before a worker that exited is started again: first, at most
# So `-m services.cli.main` in a worker imports what this process runs, wherever it was started from.
ROOT = str(Path(__file__).resolve().parents[2])


class _Worker:
    def __init__(self, name: str) -> None:
        self.name = name
        self.process: asyncio.subprocess.Process | None = None
        self.stopping = False

    async def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli.main", "run", self.name, env=env)

    async def keep_running(self) -> None:
        """Like `restart: unless-stopped`: a worker that exits on its own (Postgres down at its start, a crash) is
        started again, after a back-off that doubles while it keeps failing."""
        backoff = RESTART_BACKOFF[0]
        while not self.stopping:
            if self.process is None:
                await self.start()
            assert self.process is not None
            started = asyncio.get_running_loop().time()
            code = await self.process.wait()
            if self.stopping:
                return
            if asyncio.get_running_loop().time() - started > 60:
                backoff = RESTART_BACKOFF[0]
            log.warning("worker exited; starting it again", worker=self.name, code=code, after_seconds=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF[1])
            self.process = None

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

    workers: list[_Worker]

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets)
        finally:
            await asyncio.gather(*(w.stop() for w in self.workers))


async def _supervise_all(settings: Settings, host: str, port: int) -> None:
    server = _SupervisingServer(uvicorn.Config(create_app(settings, []), host=host, port=port, log_config=None))
    server.workers = [_Worker(name) for name in PROJECTION_SERVICES]
    keepers = [asyncio.create_task(w.keep_running()) for w in server.workers]
    try:
        await server.serve()
    finally:
        await asyncio.gather(*(w.stop() for w in server.workers))
        for keeper in keepers:
            keeper.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
