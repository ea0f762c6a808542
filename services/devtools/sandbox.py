"""A private slice of a shared stack — a database and a topic prefix of its own — for tests, benches, the demo
and chaos runs, so none of them sees another's events or rows."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from jobmeter.settings import Settings
from services.platform.serving import free_port

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def open_sandbox(base: Settings, name: str | None = None, **overrides: object) -> Settings:
    """Create a fresh database (dropping one of the same name) and return settings pointing at it."""
    tag = name or f"sandbox_{uuid.uuid4().hex[:10]}"
    if not _NAME.match(tag):
        raise ValueError(f"not a usable database name: {tag!r}")
    conn = await asyncpg.connect(base.database_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{tag}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{tag}"')
    finally:
        await conn.close()
    prefix = f"{tag.replace('_', '-')}-{uuid.uuid4().hex[:6]}."
    update = {"database_url": with_database(base.database_url, tag), "jobmeter_topic_prefix": prefix, **overrides}
    return base.model_copy(update=update)


async def close_sandbox(base: Settings, sandbox: Settings) -> None:
    """Drop the sandbox's database and delete its topics: the shared broker is left as it was found."""
    name = urlsplit(sandbox.database_url).path.lstrip("/")
    conn = await asyncpg.connect(base.database_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=sandbox.kafka_bootstrap_servers)
    try:
        await admin.start()
        mine = [t for t in await admin.list_topics() if t.startswith(sandbox.jobmeter_topic_prefix)]
        if mine:
            await admin.delete_topics(mine)
    except KafkaError:
        pass  # a broker restarted by a fault-injection run: leftover topics are harmless
    finally:
        await admin.close()


@asynccontextmanager
async def sandbox(base: Settings, name: str | None = None, **overrides: object) -> AsyncIterator[Settings]:
    """`open_sandbox` … `close_sandbox` around a block, whatever happens inside it."""
    settings = await open_sandbox(base, name, **overrides)
    try:
        yield settings
    finally:
        await close_sandbox(base, settings)


def service_env(settings: Settings) -> dict[str, str]:
    """The environment a `jobmeter run …` child needs to work in exactly this sandbox."""
    root = str(Path(__file__).resolve().parents[2])
    # Each projection's own database (JOBMETER_<NAME>_DATABASE_URL) as these settings have it: one this process's
    # environment names but the settings do not is left out, so a child folds exactly where its parent reads.
    own = {name.upper(): getattr(settings, name) for name in Settings.model_fields
           if name.startswith("jobmeter_") and name.endswith("_database_url")}
    return {
        **{k: v for k, v in os.environ.items() if k not in own},
        **{k: v for k, v in own.items() if v},
        "JOBMETER_ENV": settings.jobmeter_env,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "STRIPE_API_BASE": settings.stripe_api_base,
        "JOBMETER_TOPIC_PREFIX": settings.jobmeter_topic_prefix,
        "JOBMETER_PARTITIONS": str(settings.jobmeter_partitions),
        "JOBMETER_BATCH_TIMEOUT_MS": str(settings.jobmeter_batch_timeout_ms),
        "JOBMETER_INGEST_TOKEN": settings.jobmeter_ingest_token.get_secret_value(),
        "JOBMETER_INGEST_MAX_LAG": str(settings.jobmeter_ingest_max_lag),
        "JOBMETER_ADMIN_TOKEN": settings.jobmeter_admin_token.get_secret_value(),
        "STRIPE_WEBHOOK_SECRET": settings.stripe_webhook_secret.get_secret_value(),
        "RAPIDAPI_PROXY_SECRET": settings.rapidapi_proxy_secret.get_secret_value(),
        "JOBMETER_WEBHOOK_SIGNING_KEY": settings.jobmeter_webhook_signing_key.get_secret_value(),
        "JOBMETER_METER_WINDOW_SECONDS": str(settings.jobmeter_meter_window_seconds),
        "JOBMETER_METER_LATENESS_SECONDS": str(settings.jobmeter_meter_lateness_seconds),
        "JOBMETER_METER_POLL_SECONDS": str(settings.jobmeter_meter_poll_seconds),
        "JOBMETER_METER_LEASE_SECONDS": str(settings.jobmeter_meter_lease_seconds),
        "JOBMETER_PAYG_PRICES": settings.jobmeter_payg_prices,
        "JOBMETER_PAYG_POLL_SECONDS": str(settings.jobmeter_payg_poll_seconds),
        "JOBMETER_PAYG_LEASE_SECONDS": str(settings.jobmeter_payg_lease_seconds),
        "JOBMETER_PAYG_RECHARGE_RETRY_SECONDS": str(settings.jobmeter_payg_recharge_retry_seconds),
        "JOBMETER_PAYG_RECHARGE_RETRY_MAX_SECONDS": str(settings.jobmeter_payg_recharge_retry_max_seconds),
        "LOG_LEVEL": "WARNING",  # a line per request would be measured too
        "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
    }


@dataclass(frozen=True)
class HttpChild:
    url: str
    pid: int


@asynccontextmanager
async def http_child(settings: Settings, workers: int = 1) -> AsyncIterator[HttpChild]:
    """`jobmeter run http [--workers N]` in a child process in this sandbox (the app under uvicorn, as deployed),
    once /healthz answers; its log is shown when it does not come up."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty child must never block on a full pipe
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli.main", "run", "http", "--port", str(port), "--workers", str(workers),
            env=service_env(settings), stdout=log, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                deadline = time.monotonic() + 90 * workers  # each process imports the whole app: slow on a busy box
                while True:
                    if proc.returncode is not None or time.monotonic() > deadline:
                        log.seek(0)
                        said = log.read().decode(errors="replace")[-3000:]
                        raise RuntimeError(f"the HTTP app did not come up:\n{said}")
                    try:
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.2)
            yield HttpChild(url, proc.pid)
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
