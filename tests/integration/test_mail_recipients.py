"""Who mail reaches and what it says, on the real stack (accounts registered through the accounts consumer, mail
through a real SMTP conversation): a spend cap's alert names the currency the account pays in (the Stripe
catalog's for a subscription, the PAYG currency for PAYG); the key lifecycle's notices go to the invoice's address,
else the account's contact, else the billing inbox; the PAYG notices to the contact, else the billing inbox."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from email import message_from_bytes

import httpx
import pytest

from events.usage import UsageThresholdCrossed
from jobmeter.settings import Settings
from projections.caps.rules import month_of
from projections.migrate import migrate
from projections.payg.projection import PaygBalances
from services.http.app import create_app
from services.keys.notify import run_notifier
from services.payg.recharger import recharger_for
from tests.integration.helpers import ADMIN, applied_to_end, client_for, eventually, fetchval
from tests.integration.test_alert_mails import MAILS, WEBHOOK_TOPICS, mailing
from tests.integration.test_notify import smtp_sink

pytestmark = pytest.mark.integration

INBOX = "billing@jobmeter.test"  # `mailing`'s JOBMETER_NOTIFY_FROM


async def register(client: httpx.AsyncClient, account: str, model: str, contact: str | None) -> None:
    body = {"account_id": account, "model": model, "contact_email": contact}
    if model == "subscription":
        body["stripe_customer_id"] = f"cus_{account.upper()}"
    created = await client.post("/v1/accounts", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text


def unfolded(message: bytes, header: str) -> str:
    return " ".join(str(message_from_bytes(message)[header]).split())


async def test_a_spend_caps_alert_names_the_currency_the_account_pays_in(settings: Settings) -> None:
    period = month_of(datetime.now(UTC))
    async with smtp_sink() as (port, received):
        settings = mailing(settings, port).model_copy(update={"jobmeter_payg_currency": "eur"})
        app = create_app(settings, consumers=["accounts", "webhooks"])
        async with client_for(app) as client:
            await register(client, "subco", "subscription", "ops@subco.example")
            await register(client, "payco", "payg", "ops@payco.example")
            await applied_to_end(settings, "outgoing_webhooks", "accounts")
            await app.state.runtime.res.publisher.publish_many([UsageThresholdCrossed(
                account_id=account, period_start=period.start, period_end=period.end, limit_kind="spend_cap",
                threshold_percent=80, limit=10_000, used=8_000, crossed_at=datetime.now(UTC),
            ) for account in ("subco", "payco")])
            await applied_to_end(settings, "outgoing_webhooks", *WEBHOOK_TOPICS)
            await eventually(lambda: fetchval(settings, MAILS.format("count(*)") + " WHERE sent_at IS NOT NULL"),
                             lambda n: n == 2)
    subjects = {unfolded(m, "To"): unfolded(m, "Subject") for m in received}
    assert subjects == {
        "ops@subco.example": "Account subco: 80 % used of your spend cap of 100.00 USD",
        "ops@payco.example": "Account payco: 80 % used of your spend cap of 100.00 EUR",
    }


async def test_notices_go_to_the_invoices_address_else_the_contact_else_the_billing_inbox(
    settings: Settings,
) -> None:
    await migrate(settings.database_url, PaygBalances.schema, PaygBalances.migrations)
    async with smtp_sink() as (port, received):
        settings = mailing(settings, port)
        app = create_app(settings, consumers=["accounts"])
        async with client_for(app) as client:
            res = app.state.runtime.res
            await register(client, "subco", "subscription", "ops@subco.example")
            await register(client, "payco", "payg", "ops@payco.example")
            await register(client, "quiet", "payg", None)
            async with res.pool_for("key_lifecycle").acquire() as conn:
                for account, named in (("subco", "ap@subco.example"), ("subco", None), ("quiet", None),
                                       ("ghost", None)):
                    await conn.execute(
                        """INSERT INTO key_lifecycle.notifications (notification_id, account_id, customer_id, kind,
                                                                    reason, recipient)
                           VALUES ($1, $2, 'cus_X', 'suspended', 'payment failed', $3)""",
                        uuid.uuid4(), account, named,
                    )
            async with res.pool_for("payg").acquire() as conn:
                for n, account in enumerate(("payco", "quiet")):
                    await conn.execute(
                        """INSERT INTO payg.notifications (notification_id, account_id, kind, amount_minor, currency,
                                                           detail, created_at, pay_url)
                           VALUES ($1, $2, 'recharge_failed', 2000, 'usd', 'card declined', now(), $3)""",
                        f"n{n}", account, f"https://pay.example/{n}",
                    )
            # The workers as deployed: their own lookups of the account registry.
            notifier = asyncio.create_task(run_notifier(res, "key_lifecycle", idle_seconds=0.05))
            try:
                assert await recharger_for(res).send_notifications() == 2
                await eventually(lambda: fetchval(
                    settings, "SELECT count(*) FROM key_lifecycle.notifications WHERE sent_at IS NOT NULL"),
                    lambda n: n == 4)
            finally:
                notifier.cancel()
                await asyncio.gather(notifier, return_exceptions=True)
    sent = sorted((unfolded(m, "To"), "top-up" in unfolded(m, "Subject")) for m in received)
    assert sent == [
        ("ap@subco.example", False),  # the invoice names an address: it wins over the contact
        (INBOX, False), (INBOX, False),  # "quiet" has no contact; "ghost" is unknown to the registry
        (INBOX, True),  # a PAYG account without a contact
        ("ops@payco.example", True),
        ("ops@subco.example", False),  # no address on the invoice: the contact
    ]
