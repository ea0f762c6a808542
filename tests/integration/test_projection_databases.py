"""A projection in a Postgres database of its own (JOBMETER_<NAME>_DATABASE_URL), on the real stack: the ledger and
the account registry in a second database beside the sandbox's. Their tables, positions and rebuilds land there and
nowhere else; the HTTP API, the console and the CLI read them there; and reads that span several projections (the
accounts page, the channel report) still answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner, Result

from jobmeter.settings import Settings, get_settings
from projections.catalog import PROJECTIONS
from services.cli.main import app as cli
from services.devtools.sandbox import with_database
from services.engine.settings_check import problems
from services.http.app import create_app
from services.platform.serving import serving
from tests.integration.helpers import ADMIN, INGEST, applied_to_end, eventually, job

pytestmark = pytest.mark.integration

JOBS = 7
MOVED = ("ledger", "accounts")


@asynccontextmanager
async def second_database(settings: Settings) -> AsyncIterator[str]:
    """A database beside the sandbox's, on the same server, dropped afterwards."""
    name = settings.database_url.rsplit("/", 1)[1] + "_own"
    await execute(settings.database_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(settings.database_url, name)
    finally:
        await execute(settings.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def tables(url: str, *qualified: str) -> dict[str, bool]:
    conn = await asyncpg.connect(url)
    try:
        return {t: bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", t)) for t in qualified}
    finally:
        await conn.close()


async def value(url: str, sql: str) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def run_cli(settings: Settings, own: str, *args: str) -> Result:
    """The CLI in process, configured only through the environment, as an operator's shell would be."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "DATABASE_URL": settings.database_url,
           "JOBMETER_TOPIC_PREFIX": settings.jobmeter_topic_prefix,
           **{f"JOBMETER_{name.upper()}_DATABASE_URL": own for name in MOVED}}
    get_settings.cache_clear()
    try:
        return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)
    finally:
        get_settings.cache_clear()


def test_every_projection_has_its_database_setting_and_a_bad_url_is_named() -> None:
    for name in PROJECTIONS:
        assert f"jobmeter_{name.replace('-', '_')}_database_url" in Settings.model_fields, name
    bad = Settings(jobmeter_env="development", jobmeter_key_lifecycle_database_url="mysql://db/x",
                   jobmeter_ledger_database_url="postgresql://db")
    found = [p for p in problems(bad) if "DATABASE_URL" in p]
    assert found == ["JOBMETER_LEDGER_DATABASE_URL is not postgresql://user:password@host:port/database",
                     "JOBMETER_KEY_LIFECYCLE_DATABASE_URL is not postgresql://user:password@host:port/database"]
    assert bad.database_url_for("key-lifecycle") == "mysql://db/x" and bad.database_url_for("meter") == bad.database_url


async def test_the_ledger_and_the_registry_in_their_own_database(settings: Settings) -> None:
    async with second_database(settings) as own:
        split = settings.model_copy(update={f"jobmeter_{name}_database_url": own for name in MOVED})
        app = create_app(split, consumers=["accounts", "ledger", "meter", "payg"])
        async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
            created = await client.post("/v1/accounts", headers=ADMIN, json={
                "account_id": "acme", "model": "subscription", "stripe_customer_id": "cus_acme"})
            assert created.status_code in (201, 202), created.text
            ingested = await client.post("/v1/jobs/completed", headers=INGEST,
                                         json=[job("acme", f"j-{n}") for n in range(JOBS)])
            assert ingested.status_code == 202, ingested.text
            res = app.state.runtime.res  # one pool per database, shared by the projections living there
            assert len(res.pools) == 2 and res.pool_for("ledger") is res.pool_for("accounts") is not res.pool
            assert res.pool_for("meter") is res.pool_for("payg") is res.pool
            there = settings.model_copy(update={"database_url": own})
            await applied_to_end(there, "ledger", "jobs")
            await applied_to_end(there, "accounts", "accounts")

            # The rows, and the positions recorded with them, are in the second database only.
            assert await value(own, "SELECT count(*) FROM ledger.jobs") == JOBS
            # one record: ingest writes a request's jobs of one account as one
            assert await value(own, "SELECT sum(next_offset) FROM ledger.positions") == 1
            assert await value(own, "SELECT account_id FROM accounts.accounts") == "acme"
            assert await tables(settings.database_url, "ledger.jobs", "ledger.positions", "accounts.accounts") == {
                "ledger.jobs": False, "ledger.positions": False, "accounts.accounts": False}
            # The projections left where they were, and the areas' own stores, stay in DATABASE_URL.
            assert await tables(settings.database_url, "meter.positions", "payg.positions", "ingest.receipts") == {
                "meter.positions": True, "payg.positions": True, "ingest.receipts": True}
            assert await tables(own, "meter.positions", "ingest.receipts") == {
                "meter.positions": False, "ingest.receipts": False}

            # HTTP reads answer from where each projection lives.
            usage = (await client.get("/v1/accounts/acme/usage", headers=ADMIN)).json()
            assert usage["total"] == JOBS
            assert (await client.get("/v1/accounts/acme", headers=ADMIN)).json()["model"] == "subscription"
            origin = {"Origin": base}
            assert (await client.post("/console/login", data={"token": "dev-admin-token"}, headers=origin)
                    ).status_code == 303
            live = (await client.get("/console/api/live")).json()
            assert (live["jobs_total"], live["accounts"], live["positions"]["ledger"]) == (JOBS, 1, 1)
            listing = (await client.get("/console/accounts")).text  # the registry beside the other areas' columns
            assert "acme" in listing and "no subscription" in listing

            # The CLI, configured by the environment variables alone, reads and replays there.
            shown = await run_cli(settings, own, "accounts", "show", "acme")
            assert shown.exit_code == 0, shown.output
            assert json.loads(shown.stdout)["account_id"] == "acme"
            report = await run_cli(settings, own, "report", "usage", "--account", "acme", "--format", "json")
            assert report.exit_code == 0, report.output
            assert json.loads(report.stdout)["total"] == JOBS
            replayed = await run_cli(settings, own, "replay", "ledger", "--verify", "--swap")
            assert replayed.exit_code == 0, replayed.output
            assert "swapped" in replayed.stdout
            assert await value(own, "SELECT count(*) FROM ledger.jobs") == JOBS  # the rebuilt ledger, now live
            assert await tables(settings.database_url, "ledger.jobs", "ledger__rebuild.jobs") == {
                "ledger.jobs": False, "ledger__rebuild.jobs": False}

            # A job after the swap folds into the swapped-in ledger, in the second database.
            more = await client.post("/v1/jobs/completed", headers=INGEST, json=[job("acme", "after-swap")])
            assert more.status_code == 202

            async def counted() -> int:
                return int((await client.get("/v1/accounts/acme/usage", headers=ADMIN)).json()["total"])

            assert await eventually(counted, lambda n: n == JOBS + 1) == JOBS + 1
            assert await value(own, "SELECT count(*) FROM ledger.jobs") == JOBS + 1
