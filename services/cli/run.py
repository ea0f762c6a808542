"""`jobmeter run SERVICE`: one consumer, the HTTP app, or everything behind one command (`all`): the HTTP app in
this process and every consumer in a worker process of its own, exactly as `run NAME` runs it
(services/engine/supervisor.py; or, with `--one-process`, every consumer inside the HTTP app's process)."""

from __future__ import annotations

import asyncio
import signal
from functools import partial
from pathlib import Path

import typer
import uvicorn
from fastapi import FastAPI

from jobmeter.settings import Settings, get_settings
from services.engine.health import report_health
from services.engine.runtime import PROJECTION_SERVICES, build_runtime
from services.engine.supervisor import supervise_all
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
    health_file: Path = typer.Option(None, hidden=True, help="set by `run all`: where its worker reports its health"),
    workers: int = typer.Option(
        1, min=1,
        help="`http` only: this many HTTP processes sharing the port (one Python process parses and publishes on one "
             "core); each keeps its own key index, Kafka producer and pools, and its own per-process limits "
             "(failed console logins, Stripe requests)",
    ),
) -> None:
    """Run one service in the foreground until Ctrl-C or SIGTERM."""
    if service not in SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; choose from: {', '.join(SERVICES)}")
    settings = get_settings()
    if workers > 1 and service != "http":
        raise typer.BadParameter("--workers is for `http` only")
    if service == "gateway":
        serve_gateway(settings, port or 8090, host=host, jobmeter_url=engine_url)
    elif service == "all" and not one_process:
        asyncio.run(supervise_all(settings, host, port or settings.jobmeter_http_port))
    elif service == "http" and workers > 1:
        # uvicorn binds the port once and starts the processes (restarting one that dies); each builds the app
        # from the same environment through `http_app`. A process answers uvicorn's liveness ping only once it has
        # imported everything: at the default 5 s, a loaded machine had it killed and started again in a loop.
        uvicorn.run("services.cli.run:http_app", factory=True, workers=workers, host=host,
                    port=port or settings.jobmeter_http_port, log_config=None, timeout_worker_healthcheck=60)
    elif service in ("http", "all"):
        consumers = list(PROJECTION_SERVICES) if service == "all" else []
        app = create_app(settings, consumers)
        uvicorn.run(app, host=host, port=port or settings.jobmeter_http_port, log_config=None)
    else:
        asyncio.run(_consume(settings, service, health_file))


def http_app() -> FastAPI:
    """`run http --workers N`: the app of one of the N processes."""
    return create_app(get_settings(), [])


async def _consume(settings: Settings, service: str, health_file: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime = build_runtime(settings, [service])
    if health_file is not None:
        runtime.workers.append(("health report", partial(report_health, runtime, health_file)))
    async with runtime.running(producer=f"jobmeter-{service}"):
        await stop.wait()
