"""Alert emails an operator can see, on the real stack: an alert whose mail the SMTP server refuses is on the
console's account page beside the webhook deliveries, with its attempts and error; once it has failed past the
doctor's bound `jobmeter doctor` (and the console's Attention page) list it with the command that shows it; when
mail goes again it is sent, and the doctor no longer lists it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from jobmeter.settings import Settings
from services.engine.attention import Bounds
from services.http.app import create_app
from tests.integration.cli import run_cli
from tests.integration.helpers import applied_to_end, client_for, eventually, fetchval
from tests.integration.test_alert_mails import CONSUMERS, MAILS, WEBHOOK_TOPICS, create, mailing
from tests.integration.test_caps import ingest, put_cap
from tests.integration.test_console_auth import log_in
from tests.integration.test_doctor import by_kind, doctor
from tests.integration.test_notify import smtp_sink

pytestmark = pytest.mark.integration


async def test_an_alert_mail_not_going_out_is_on_the_console_and_in_the_doctor(settings: Settings) -> None:
    async with smtp_sink(refuse=True) as (port, _):
        refusing = mailing(settings, port)
        app = create_app(refusing, consumers=CONSUMERS)
        async with client_for(app) as client:
            assert (await create(client, "acme", "ops@acme.example")).status_code == 201
            await put_cap(client, "acme", jobs=5, hard=False)
            await ingest(client, "acme", "j1", "j2", "j3", "j4")  # 80 % of the cap: one alert, one mail
            await applied_to_end(refusing, "outgoing_webhooks", *WEBHOOK_TOPICS)
            await eventually(lambda: fetchval(refusing, MAILS.format("max(attempts)")), lambda n: (n or 0) >= 1)
            await log_in(client)
            page = (await client.get("/console/accounts/acme")).text
            mails = page[page.index("Alert emails to this account"):]
            assert "usage.threshold_crossed" in mails and "no thanks" in mails
            assert page.index("Webhook deliveries to this account") < page.index("Alert emails to this account")

            # Young, it is the mailer's to retry; failing past the bound, it is the operator's.
            code, items = await doctor(refusing)
            assert ("alert-mail-unsent", "acme") not in by_kind(items)
            bound = Bounds.of(refusing).mail
            await fetchval(refusing, "UPDATE outgoing_webhooks.alert_mails SET created_at = created_at - $1::interval",
                           bound + timedelta(minutes=1))
            code, items = await doctor(refusing)
            unsent = by_kind(items)[("alert-mail-unsent", "acme")]
            assert code == 1 and unsent["resolve"] == "jobmeter webhooks mails acme"
            detail = unsent["detail"]
            assert "usage.threshold_crossed alert mail" in detail and "to ops@acme.example" in detail
            assert "no thanks" in detail and unsent["age_seconds"] >= bound.total_seconds()
            attention = (await client.get("/console/attention")).text
            assert "alert-mail-unsent" in attention and "jobmeter webhooks mails acme" in attention

    listed = await run_cli(settings, "webhooks", "mails", "acme", "--json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["type"], row["sent_at"]) == ("usage.threshold_crossed", None) and row["attempts"] >= 1

    # Mail goes again: the mailer sends it on its own, and nothing is left to resolve.
    async with smtp_sink() as (port, received):
        accepting = mailing(settings, port)
        async with client_for(create_app(accepting, consumers=CONSUMERS)):
            await eventually(lambda: fetchval(accepting, MAILS.format("count(*)") + " WHERE sent_at IS NULL"),
                             lambda n: n == 0)
            code, items = await doctor(accepting)
            assert ("alert-mail-unsent", "acme") not in by_kind(items)
    assert len(received) == 1
    [row] = json.loads((await run_cli(settings, "webhooks", "mails", "acme", "--json")).stdout)
    assert row["sent_to"] == "ops@acme.example"
