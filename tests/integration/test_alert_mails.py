"""Alerts that reach people, on the real stack with a real SMTP conversation (test_notify's local sink): an account
with a contact that crosses 80 % and 100 % of a cap gets exactly two mails at that address, each once, also after
the `webhooks` consumer refolds its whole log, the alert is published again, and a replay rebuilds it; the forecast
watcher warns once (an email and a `usage.forecast_exceeded` webhook) for a growing history whose forecast passes
its cap, and not for a flat one under it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes

import httpx
import pytest
from pydantic import SecretStr

from events.usage import UsageCapReached
from jobmeter.settings import Settings
from projections import replay
from projections.caps.rules import month_of
from services.http.app import create_app
from services.ledger.forecast_watch import watch_once
from services.ledger.periods import month_start
from services.platform.mail import SmtpMailer
from services.platform.resources import open_resources
from services.webhooks.alert_mail import mail_alerts_once
from services.webhooks.commands import add_endpoint, list_alert_mails
from tests.integration.cli import run_cli
from tests.integration.helpers import ADMIN, INGEST, applied_to_end, client_for, eventually, fetchval, job
from tests.integration.test_caps import ingest, put_cap
from tests.integration.test_notify import smtp_sink
from tests.integration.test_outgoing_webhooks import Receiver

pytestmark = pytest.mark.integration

CONSUMERS = ["accounts", "caps", "webhooks"]
WEBHOOK_TOPICS = ("accounts", "billing", "keys", "payg")  # what the `webhooks` consumer reads
MAILS = "SELECT {} FROM outgoing_webhooks.alert_mails"


def mailing(settings: Settings, port: int) -> Settings:
    return settings.model_copy(update={
        "jobmeter_smtp_url": SecretStr(f"smtp://127.0.0.1:{port}"), "jobmeter_notify_from": "billing@jobmeter.test",
        "jobmeter_webhook_poll_seconds": 0.05, "jobmeter_webhook_retry_scale": 0.001,
    })


async def create(client: httpx.AsyncClient, account: str, contact: str | None) -> httpx.Response:
    body = {"account_id": account, "model": "payg", "contact_email": contact}
    return await client.post("/v1/accounts", json=body, headers=ADMIN)


async def test_a_cap_crossed_at_80_and_100_percent_mails_the_contact_twice_each_once(settings: Settings) -> None:
    async with smtp_sink() as (port, received):
        settings = mailing(settings, port)

        async def mails() -> int:
            return len(received)

        app = create_app(settings, consumers=CONSUMERS)
        async with client_for(app) as client:
            created = await create(client, "acme", "Ops@ACME.example")
            assert created.status_code == 201, created.text
            assert created.json()["contact_email"] == "Ops@acme.example"
            refused = await create(client, "other", "not-an-address")
            assert refused.status_code == 422 and "contact_email" in refused.text
            await put_cap(client, "acme", jobs=5, hard=False)
            await ingest(client, "acme", "j1", "j2", "j3", "j4", "j5")
            # Three alerts (80 %, 100 %, the cap reached) reach the fold; the 100 % is the cap reached, one mail.
            await eventually(lambda: fetchval(settings, "SELECT count(*) FROM outgoing_webhooks.events"),
                             lambda n: n == 3)
            await eventually(mails, lambda n: n >= 2)
            await applied_to_end(settings, "outgoing_webhooks", *WEBHOOK_TOPICS)
            assert await fetchval(settings, MAILS.format("count(*)")) == 2
            listed = await eventually(lambda: list_alert_mails(app.state.runtime.res, "acme"),
                                      lambda rows: all(r["sent_at"] for r in rows))
            assert sorted((r["type"], r["sent_to"]) for r in listed) == [
                ("usage.cap_reached", "Ops@acme.example"), ("usage.threshold_crossed", "Ops@acme.example")]

        # The consumer refolds its whole log, and the relay publishes the cap reached again: no mail is recorded
        # twice, so none is sent twice.
        await fetchval(settings, "DELETE FROM outgoing_webhooks.positions")
        app = create_app(settings, consumers=CONSUMERS)
        async with client_for(app) as client:
            period = month_of(datetime.now(UTC))
            await app.state.runtime.res.publisher.publish(UsageCapReached(
                account_id="acme", period_start=period.start, period_end=period.end, limit_kind="cap", hard=False,
                limit=5, used=5, reached_at=datetime.now(UTC)))
            await applied_to_end(settings, "outgoing_webhooks", *WEBHOOK_TOPICS)
            assert await fetchval(settings, MAILS.format("count(*)")) == 2
            await eventually(lambda: fetchval(settings, MAILS.format("count(*)") + " WHERE sent_at IS NULL"),
                             lambda n: n == 0)

            # A rebuild beside the live tables records the same two mails and sends neither.
            rebuilt = await replay.rebuild(settings, "webhooks")
            assert (rebuilt.partial, rebuilt.dead) == (False, 0)
            assert await replay.verify(settings, "webhooks") == []
            assert await fetchval(settings, "SELECT count(*) FROM outgoing_webhooks__rebuild.alert_mails") == 2

            # The contact changes (CLI, then HTTP); a bad address or an unknown account is refused.
            changed = await run_cli(settings, "accounts", "contact", "acme", "--email", "alerts@acme.example")
            assert changed.exit_code == 0, changed.output
            assert json.loads(changed.stdout)["contact_email"] == "alerts@acme.example"
            assert (await run_cli(settings, "accounts", "contact", "acme")).exit_code == 2  # neither given
            made = await run_cli(settings, "accounts", "create", "cli", "--model", "payg", "--email", "a@B.io")
            assert made.exit_code == 0 and json.loads(made.stdout)["contact_email"] == "a@b.io", made.output
            put = await client.put("/v1/accounts/acme/contact", json={"contact_email": "x@"}, headers=ADMIN)
            assert put.status_code == 422
            put = await client.put("/v1/accounts/nobody/contact", json={"contact_email": "a@b.io"}, headers=ADMIN)
            assert put.status_code == 404
            await applied_to_end(settings, "outgoing_webhooks", "accounts")
            assert await fetchval(settings, "SELECT contact_email FROM outgoing_webhooks.contacts") == \
                "alerts@acme.example"

    messages = [message_from_bytes(m) for m in received]
    assert len(messages) == 2
    assert {m["To"] for m in messages} == {"Ops@acme.example"}
    subjects = sorted(str(m["Subject"]) for m in messages)
    assert subjects == ["Account acme: 80 % used of your cap of 5 jobs", "Account acme: your cap of 5 jobs reached"]
    assert len({m["Message-ID"] for m in messages}) == 2
    sent_to = await fetchval(settings, MAILS.format("string_agg(DISTINCT sent_to, ',')"))
    assert sent_to == "Ops@acme.example"


async def test_the_forecast_watcher_warns_once_for_a_growing_history_and_not_for_a_flat_one(
    settings: Settings,
) -> None:
    # A fixed instant in last month, 10 days in: its history is complete and no later job can change it.
    start = month_start(month_start(datetime.now(UTC)) - timedelta(days=1))
    now = start + timedelta(days=10, hours=12)
    batch = [job("grow", f"g{d}-{i}", at=start + timedelta(days=d, minutes=10 * i)) for d in range(10)
             for i in range(6 * (d + 1))]
    batch += [job("flat", f"f{d}-{i}", at=start + timedelta(days=d, minutes=10 * i)) for d in range(10)
              for i in range(10)]
    async with smtp_sink() as (port, received):
        settings = mailing(settings, port)
        with Receiver() as receiver:
            app = create_app(settings, consumers=["ledger", *CONSUMERS])
            async with client_for(app) as client:
                res = app.state.runtime.res
                for account in ("grow", "flat"):
                    assert (await create(client, account, f"ops@{account}.example")).status_code == 201
                endpoint = await add_endpoint(res, "grow", receiver.url, ["usage.forecast_exceeded"])
                assert endpoint.folded
                assert (await client.post("/v1/jobs/completed", json=batch, headers=INGEST)).status_code == 202
                await applied_to_end(settings, "ledger", "jobs")
                await applied_to_end(settings, "caps", "jobs", "accounts")
                for account in ("grow", "flat"):
                    await put_cap(client, account, jobs=600, hard=False)

                found = await watch_once(res, "outgoing_webhooks", now=now)
                assert [(f.account_id, f.limit_kind, f.limit, f.jobs_to_date) for f in found] == [
                    ("grow", "cap", 600, 330)]
                assert found[0].forecast_jobs > 600 and found[0].period_start == start

                async def delivered() -> int:
                    return await receiver.count()

                await eventually(delivered, lambda n: n == 1)
                await eventually(lambda: fetchval(settings, MAILS.format("count(*)") + " WHERE sent_at IS NOT NULL"),
                                 lambda n: n == 1)
                # Looked at again (a new process knows nothing it published), later too: already raised.
                await applied_to_end(settings, "outgoing_webhooks", *WEBHOOK_TOPICS)
                assert await watch_once(res, "outgoing_webhooks", now=now) == []
                assert await watch_once(res, "outgoing_webhooks", now=now + timedelta(days=2)) == []
                await applied_to_end(settings, "outgoing_webhooks", *WEBHOOK_TOPICS)
                assert await fetchval(settings, MAILS.format("count(*)")) == 1

        body = json.loads(receiver.received[0][1])
        assert (body["type"], body["account_id"], body["data"]["limit"]) == ("usage.forecast_exceeded", "grow", 600)
    assert [message_from_bytes(m)["To"] for m in received] == ["ops@grow.example"]
    assert "forecast to exceed your cap of 600 jobs" in str(message_from_bytes(received[0])["Subject"])


async def test_a_refused_alert_mail_stays_unsent_and_a_leased_one_waits_for_its_lease(settings: Settings) -> None:
    """The mailer's own guarantees, on rows as the fold writes them: a refused send is counted and retried, a row
    leased to a mailer that died is not sent by another until the lease ends, and then once."""
    alert = uuid.uuid4()
    data = {"balance_minor": 2400, "threshold_minor": 2500, "currency": "usd", "low_at": "2026-12-01T00:00:00Z"}
    async with open_resources(settings, producer="test") as res:
        async with res.pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO outgoing_webhooks.events (event_id, account_id, type, occurred_at, data)
                   VALUES ($1, 'acme', 'balance.low', now(), $2)""", alert, json.dumps(data))
            await conn.execute("INSERT INTO outgoing_webhooks.alert_mails (event_id, account_id) VALUES ($1, 'acme')",
                               alert)
        async with smtp_sink(refuse=True) as (port, _):
            refused = await mail_alerts_once(res.pool, "outgoing_webhooks", SmtpMailer(f"smtp://127.0.0.1:{port}"),
                                             "billing@jobmeter.test", "usd")
        assert refused == (0, 1)
        row = await fetchval(settings, MAILS.format("row(attempts, sent_at IS NULL, last_error LIKE '%no thanks%')"))
        assert tuple(row) == (1, True, True)

        async with smtp_sink() as (port, received):
            mailer = SmtpMailer(f"smtp://127.0.0.1:{port}")
            # Leased by a mailer that died (its lease runs for two minutes): nobody else sends it meanwhile.
            async with res.pool.acquire() as conn:
                await conn.execute("UPDATE outgoing_webhooks.alert_mails SET claimed_until = now() + interval '2 min'")
            assert await mail_alerts_once(res.pool, "outgoing_webhooks", mailer, "billing@jobmeter.test", "usd") == \
                (0, 0)
            later = datetime.now(UTC) + timedelta(minutes=3)
            assert await mail_alerts_once(res.pool, "outgoing_webhooks", mailer, "billing@jobmeter.test", "usd",
                                          now=later) == (1, 0)
            assert await mail_alerts_once(res.pool, "outgoing_webhooks", mailer, "billing@jobmeter.test", "usd",
                                          now=later) == (0, 0)
        message = message_from_bytes(received[0])
        assert len(received) == 1 and message["To"] == "billing@jobmeter.test"  # no contact on file: the inbox
        text = message.get_payload(decode=True)  # as written, whatever transfer encoding long lines took
        assert isinstance(text, bytes) and b"24.00 USD, below its threshold of 25.00 USD" in text
        assert message["Message-ID"] == f"<alert-{alert}@jobmeter>"
