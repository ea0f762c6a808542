"""The forecast alert for spend caps and per-API caps, on the real stack: a PAYG account whose history (last month,
ten days in) forecasts past its spend cap on all jobs, a spend cap on one API surface and a job cap on another gets
one `usage.forecast_exceeded` webhook and one email per limit, in the PAYG currency; a second process, a later look,
the `webhooks` consumer refolding its log, the alert published again and a rebuild record none of them twice."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from email import message_from_bytes

import pytest

from jobmeter.settings import Settings
from projections import replay
from services.http.app import create_app
from services.ledger.forecast_watch import watch_once
from services.ledger.periods import month_start
from services.webhooks.commands import add_endpoint
from tests.integration.helpers import INGEST, applied_to_end, client_for, eventually, fetchval, job
from tests.integration.test_alert_mails import CONSUMERS, MAILS, WEBHOOK_TOPICS, create, mailing
from tests.integration.test_caps import put_cap
from tests.integration.test_notify import smtp_sink
from tests.integration.test_outgoing_webhooks import Receiver

pytestmark = pytest.mark.integration


async def test_spend_caps_and_a_surfaces_cap_are_forecast_once_each(settings: Settings) -> None:
    # A fixed instant in last month, 10 days in: its history is complete and no later job can change it.
    start = month_start(month_start(datetime.now(UTC)) - timedelta(days=1))
    now = start + timedelta(days=10, hours=12)
    # Per day: 10 extract jobs (50 minor units) and 20 classify jobs (60): 300 jobs and 1100 spent in ten days.
    batch = [job("spender", f"e{d}-{i}", api="extract", at=start + timedelta(days=d, minutes=30 * i))
             for d in range(10) for i in range(10)]
    batch += [job("spender", f"c{d}-{i}", api="classify", at=start + timedelta(days=d, minutes=30 * i + 5))
              for d in range(10) for i in range(20)]
    async with smtp_sink() as (port, received):
        # The default prices: extract=5, classify=3.
        settings = mailing(settings, port).model_copy(update={"jobmeter_payg_currency": "eur"})
        with Receiver() as receiver:
            app = create_app(settings, consumers=["ledger", *CONSUMERS])
            async with client_for(app) as client:
                res = app.state.runtime.res
                assert (await create(client, "spender", "ops@spender.example")).status_code == 201
                assert (await add_endpoint(res, "spender", receiver.url, ["usage.forecast_exceeded"])).folded
                assert (await client.post("/v1/jobs/completed", json=batch, headers=INGEST)).status_code == 202
                await applied_to_end(settings, "ledger", "jobs")
                await applied_to_end(settings, "caps", "jobs", "accounts")
                await put_cap(client, "spender", jobs=1_000_000, hard=False, spend_minor=2000)
                await put_cap(client, "spender", api="classify", jobs=1_000_000, hard=False, spend_minor=1000)
                await put_cap(client, "spender", api="extract", jobs=200, hard=False)

                found = await watch_once(res, "outgoing_webhooks", now=now)
                assert [(f.limit_kind, f.api, f.limit, f.jobs_to_date) for f in found] == [
                    ("cap", "extract", 200, 100), ("spend_cap", None, 2000, 300), ("spend_cap", "classify", 1000, 200)]
                by_scope = {(f.limit_kind, f.api): f for f in found}
                whole, classify = by_scope[("spend_cap", None)], by_scope[("spend_cap", "classify")]
                assert (whole.spend_to_date, whole.currency) == (1100, "eur") and whole.forecast_spend is not None
                # The period's mix kept: 1100 for 300 jobs, so the forecast jobs cost 11/3 each.
                expected = (Decimal(1100) * whole.forecast_jobs / 300).quantize(Decimal(1), rounding=ROUND_HALF_UP)
                assert whole.forecast_spend == int(expected) > 2000
                assert classify.spend_to_date == 600 and classify.forecast_spend is not None
                assert classify.forecast_spend > 1000
                assert by_scope[("cap", "extract")].forecast_jobs > 200

                await eventually(receiver.count, lambda n: n == 3)
                await eventually(lambda: fetchval(settings, MAILS.format("count(*)") + " WHERE sent_at IS NOT NULL"),
                                 lambda n: n == 3)
                await applied_to_end(settings, "outgoing_webhooks", *WEBHOOK_TOPICS)
                # Looked at again, later too: already raised.
                assert await watch_once(res, "outgoing_webhooks", now=now) == []
                assert await watch_once(res, "outgoing_webhooks", now=now + timedelta(days=2)) == []

            # A second process (it knows nothing it published), after the consumer refolded its whole log, with
            # the alert published again: the same three alerts, the same three mails.
            await fetchval(settings, "DELETE FROM outgoing_webhooks.positions")
            app = create_app(settings, consumers=["ledger", *CONSUMERS])
            async with client_for(app) as client:
                res = app.state.runtime.res
                await applied_to_end(settings, "outgoing_webhooks", *WEBHOOK_TOPICS)
                assert await watch_once(res, "outgoing_webhooks", now=now + timedelta(days=1)) == []
                await res.publisher.publish(found[1])
                await applied_to_end(settings, "outgoing_webhooks", *WEBHOOK_TOPICS)
                assert await fetchval(settings, MAILS.format("count(*)")) == 3
                assert await fetchval(settings, "SELECT count(*) FROM outgoing_webhooks.deliveries") == 3
                rebuilt = await replay.rebuild(settings, "webhooks")
                assert (rebuilt.partial, rebuilt.dead) == (False, 0)
                assert await fetchval(settings, "SELECT count(*) FROM outgoing_webhooks__rebuild.alert_mails") == 3

        bodies = sorted((json.loads(b)["data"] for _, b in receiver.received), key=lambda d: (d["limit_kind"],
                                                                                               d["api"] or ""))
        assert [(d["limit_kind"], d["api"], d["currency"]) for d in bodies] == [
            ("cap", "extract", None), ("spend_cap", None, "eur"), ("spend_cap", "classify", "eur")]
        assert bodies[1]["spend_to_date"] == 1100
    messages = [message_from_bytes(m) for m in received]
    assert {m["To"] for m in messages} == {"ops@spender.example"} and len(messages) == 3
    assert sorted(" ".join(str(m["Subject"]).split()) for m in messages) == [  # a long subject comes folded
        "Account spender: forecast to exceed your cap of 200 jobs on extract",
        "Account spender: forecast to exceed your spend cap of 10.00 EUR on classify",
        "Account spender: forecast to exceed your spend cap of 20.00 EUR",
    ]
