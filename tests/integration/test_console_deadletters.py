"""The console's dead-letter page over real HTTP (uvicorn on a port) against the real stack: a job the ledger could not
apply shows with its consumer, reason, time and record; its redrive is refused without the form's CSRF token, and
with it applies the job through the ledger once, however often it is pressed."""

from __future__ import annotations

import html
import json
import re

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from events.topics import Topics
from jobmeter.settings import Settings
from services.http.app import create_app
from services.platform.serving import serving
from tests.integration.helpers import applied_to_end
from tests.integration.test_console_auth import ADMIN_TOKEN, csrf_of

pytestmark = pytest.mark.integration

JOB = json.dumps({
    "event_id": "7b0c7a53-8f3e-4a43-9d0e-6c2a3f0b1e13", "type": "JobCompleted", "version": 1,
    "occurred_at": "2026-11-24T10:15:00Z", "producer": "hand",
    "data": {"account_id": "beta", "api": "extract", "job_id": "j-beta", "channel": "direct", "mode": "sync",
             "completed_at": "2026-11-24T10:14:00Z"},
}).encode()


async def sql(settings: Settings, statement: str) -> object:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await conn.fetchval(statement)
    finally:
        await conn.close()


def rows_of(page: str) -> list[str]:
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in page else ""
    return re.findall(r"<tr>.*?</tr>", body, re.S)


async def test_a_dead_letter_shows_and_its_redrive_applies_it_once(settings: Settings) -> None:
    jobs = Topics(settings.jobmeter_topic_prefix).jobs
    async with serving(create_app(settings, consumers=["ledger"])) as base, \
            httpx.AsyncClient(base_url=base, timeout=30) as client:
        origin = {"Origin": base}
        assert (await client.post("/console/login", data={"token": ADMIN_TOKEN}, headers=origin)).status_code == 303
        empty = (await client.get("/console/deadletters")).text
        assert "No dead letters." in empty
        assert '<a href="/console/deadletters" aria-current="page">Dead letters</a>' in empty
        assert '<a href="/console/deadletters"' in (await client.get("/console/accounts")).text  # in the nav

        # A constraint standing for a bug makes the ledger refuse the job: dead-lettered, position moved past it.
        await sql(settings, "ALTER TABLE ledger.jobs ADD CONSTRAINT stand_in_for_a_bug CHECK (account_id <> 'beta')")
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
        await producer.start()
        try:
            sent = await producer.send_and_wait(jobs, JOB, key=b"beta")
        finally:
            await producer.stop()
        await applied_to_end(settings, "ledger", "jobs")
        assert await sql(settings, "SELECT count(*) FROM ledger.jobs") == 0

        page = (await client.get("/console/deadletters")).text
        [row] = rows_of(page)
        cells = [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
        assert "ledger" in cells[1] and cells[2].startswith("could not apply") and "stand_in_for_a_bug" in cells[2]
        assert cells[4] == f"{jobs}/{sent.partition}@{sent.offset}" and cells[5] == "—"  # not redriven yet
        [action] = re.findall(r'action="(/console/deadletters/[^"]+/redrive)"', row)
        token = csrf_of(page)

        await sql(settings, "ALTER TABLE ledger.jobs DROP CONSTRAINT stand_in_for_a_bug")  # the fix
        forged = await client.post(action, data={}, headers=origin)
        assert forged.status_code == 403
        elsewhere = await client.post(action, data={"csrf": token}, headers={"Origin": "http://evil.test"})
        assert elsewhere.status_code == 403
        assert await sql(settings, "SELECT count(*) FROM ledger.jobs") == 0  # neither was applied

        done = await client.post(action, data={"csrf": token}, headers=origin)
        assert done.status_code == 303 and done.headers["location"] == "/console/deadletters?notice=redrive-applied"
        after = (await client.get(done.headers["location"])).text
        assert "applied again through the consumer that refused it" in after
        [row] = rows_of(after)
        assert "<td>applied</td>" in row and "/redrive" not in row  # settled: nothing left to redrive
        assert await sql(settings, "SELECT count(*) FROM ledger.jobs WHERE job_id = 'j-beta'") == 1

        again = await client.post(action, data={"csrf": token}, headers=origin)  # a second press, a stale page
        assert again.status_code == 303
        assert await sql(settings, "SELECT count(*) FROM ledger.jobs") == 1
        assert await sql(settings, "SELECT sum(jobs) FROM ledger.hourly WHERE account_id = 'beta'") == 1

        missing = await client.post("/console/deadletters/00000000-0000-0000-0000-000000000000/redrive",
                                    data={"csrf": token}, headers=origin)
        assert missing.status_code == 404 and "no dead letter" in missing.text
