"""The `jobmeter` command line run in this test process, pointed at one test's sandbox (topics and database)."""

from __future__ import annotations

import asyncio

from typer.testing import CliRunner, Result

from jobmeter.settings import Settings, get_settings
from services.cli.main import app


async def run_cli(settings: Settings, *args: str) -> Result:
    """The CLI in a thread (it runs its own event loop), with the sandbox's Kafka prefix and database."""
    get_settings.cache_clear()
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "DATABASE_URL": settings.database_url,
           "JOBMETER_TOPIC_PREFIX": settings.jobmeter_topic_prefix}
    try:
        return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    finally:
        get_settings.cache_clear()
