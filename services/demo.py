"""The end-to-end demo: the whole engine on a generated workload, in one process, over real servers.

Everything goes through the public doors a user would use: accounts and jobs over HTTP (with bad items and
retries mixed in, as real traffic has), legacy page-era events through the normaliser, and the consumers
folding the log. The summary is read back from the ledger, never from what the generator intended.
"""

from __future__ import annotations

import asyncio
import random
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import uvicorn

from events.jobs import LegacyOperation
from events.publisher import Publisher
from events.topics import Topics
from jobmeter.settings import Settings
from services.http.app import create_app
from services.runtime import PROJECTION_SERVICES

MODELS = ("subscription", "payg", "rapidapi")


@dataclass
class Workload:
    accounts: list[tuple[str, str]]  # (account id, billing model)
    batches: list[list[dict[str, Any]]]
    legacy: list[LegacyOperation]
    expected_jobs: int  # distinct valid jobs sent over HTTP
    expected_legacy_jobs: int


@dataclass
class DemoResult:
    address: str
    ingest: Counter[str] = field(default_factory=Counter)
    ledger_rows: list[dict[str, Any]] = field(default_factory=list)
    ledger_total: int = 0
    expected_total: int = 0


def generate(apis: tuple[str, ...], *, accounts: int = 50, jobs: int = 5000, seed: int = 7) -> Workload:
    """A month of traffic, compressed: most jobs valid, some retried, some broken, some legacy."""
    rng = random.Random(seed)  # noqa: S311 - a workload, not a secret
    run = uuid.uuid4().hex[:6]
    people = [(f"demo-{run}-{i:02d}", MODELS[i % 3]) for i in range(accounts)]
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    items: list[dict[str, Any]] = []
    for n in range(jobs):
        account, model = rng.choice(people)
        items.append({
            "account_id": account, "api": rng.choice(apis), "job_id": f"{run}-{n}",
            "channel": "rapidapi" if model == "rapidapi" else "direct", "mode": rng.choice(("sync", "async")),
            "completed_at": (now - timedelta(hours=rng.randrange(0, 72), minutes=rng.randrange(60))).isoformat(),
        })
    retries = rng.sample(items, len(items) // 10)  # an upstream that retries: same jobs again
    broken = [{**rng.choice(items), "api": "teleport"} for _ in range(jobs // 50)]
    stream = items + retries + broken
    rng.shuffle(stream)
    batches = [stream[i : i + 250] for i in range(0, len(stream), 250)]
    legacy: list[LegacyOperation] = []
    for n in range(100):
        account, _ = people[n % accounts]
        job = {"account_id": account, "api": apis[n % len(apis)], "job_id": f"{run}-legacy-{n}"}
        at = now - timedelta(days=1, minutes=n)
        legacy += [LegacyOperation(kind="pages_processed", occurred_at=at, pages=p, **job) for p in range(1, 4)]
        legacy.append(LegacyOperation(kind="job_failed" if n % 10 == 0 else "sync_call_finished", occurred_at=at,
                                      **job))
    return Workload(people, batches, legacy, expected_jobs=len(items), expected_legacy_jobs=90)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_demo(settings: Settings, *, port: int | None = None, progress: Any = None) -> DemoResult:
    """Serve the engine, drive the workload through it, read the ledger back, stop serving."""
    port = port or free_port()
    app = create_app(settings, consumers=list(PROJECTION_SERVICES))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # raises why the server could not start
        await asyncio.sleep(0.05)
    result = DemoResult(address=f"http://127.0.0.1:{port}")
    try:
        work = generate(settings.jobmeter_apis)
        await _drive(settings, result, work, progress)
    finally:
        server.should_exit = True
        await serving
    return result


async def _drive(settings: Settings, result: DemoResult, work: Workload, progress: Any) -> None:
    admin = {"Authorization": f"Bearer {settings.jobmeter_admin_token.get_secret_value()}"}
    ingest = {"Authorization": f"Bearer {settings.jobmeter_ingest_token.get_secret_value()}"}
    async with httpx.AsyncClient(base_url=result.address, timeout=30) as client:
        for account, model in work.accounts:
            response = await client.post("/v1/accounts", json={"account_id": account, "model": model}, headers=admin)
            response.raise_for_status()
        for batch in work.batches:
            body = (await client.post("/v1/jobs/completed", json=batch, headers=ingest)).json()
            for key in ("accepted", "duplicates", "rejected"):
                result.ingest[key] += body[key]
            if progress:
                progress(len(batch))
    topics = Topics(settings.jobmeter_topic_prefix)
    async with Publisher(settings.kafka_bootstrap_servers, producer="legacy-importer", topics=topics) as publisher:
        await publisher.publish_many(work.legacy)
    result.expected_total = work.expected_jobs + work.expected_legacy_jobs
    prefix = work.accounts[0][0].rsplit("-", 1)[0]
    conn = await asyncpg.connect(settings.database_url)
    try:
        for _ in range(600):
            result.ledger_total = await conn.fetchval(
                "SELECT coalesce(sum(jobs), 0) FROM ledger.hourly WHERE account_id LIKE $1 || '%'", prefix
            )
            if result.ledger_total >= result.expected_total:
                break
            await asyncio.sleep(0.1)
        rows = await conn.fetch(
            """SELECT h.api, h.channel, coalesce(a.model, '(unknown)') AS model, sum(h.jobs)::bigint AS jobs
               FROM ledger.hourly h LEFT JOIN accounts.accounts a USING (account_id)
               WHERE h.account_id LIKE $1 || '%' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
            prefix,
        )
        result.ledger_rows = [dict(r) for r in rows]
    finally:
        await conn.close()

