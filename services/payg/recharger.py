"""Charges what the PAYG fold requested: one off-session PaymentIntent per recharge, exactly once in effect.

Order of steps, and what a crash between them does:
1. the fold recorded the recharge (`requested`) with the positions of the jobs that caused it;
2. a claim leases it (`claimed_until`, `attempts + 1`) — a crash after it leaves the lease to run out;
3. the PaymentIntent is created and confirmed with idempotency key = the recharge id;
4. its id and `sent_at` are recorded — a crash between 3 and 4 sends the same key again after the lease, and
   Stripe answers with the PaymentIntent it already made: the card is charged once.
The money is credited when Stripe's `payment_intent.succeeded` arrives on the bus (the fold does it), or when
`services.payg.reconciler` finds the PaymentIntent succeeded because that webhook is late. A decline
or `authentication_required` becomes a `RechargeFailed` in the outbox; the fold backs off, counts it, and writes
a notification, which `send_notifications` delivers with a link to pay on-session.
A recharge requested longer ago than `max_age` is not charged: it comes from a replay of old history.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlencode

import asyncpg
import stripe
import structlog

from events.envelope import utcnow
from events.payg import RechargeFailed
from jobmeter.settings import Settings
from projections.db import transaction
from projections.outbox import emit
from projections.payg import queries, recharge_store
from projections.payg.projection import PRODUCER
from services.platform.mail import Mailer, mailer_for
from services.platform.poll import PollPolicy, poll
from services.platform.resources import Resources
from services.stripe_adapter.client import is_retryable, make_client

log = structlog.get_logger(__name__)

# How long a claimed recharge is left to its claimer before another pass may send it again (same key).
LEASE = timedelta(minutes=2)

@dataclass(frozen=True)
class ChargeOutcome:
    sent: int = 0
    failed: int = 0
    postponed: int = 0

    @property
    def claimed(self) -> int:
        return self.sent + self.failed + self.postponed


def payment_intent_params(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "customer": row["customer_id"],
        "payment_method": row["payment_method_id"],
        "amount": row["amount_minor"],
        "currency": row["currency"],
        "off_session": True,
        "confirm": True,
        "metadata": {"account_id": row["account_id"], "recharge_id": row["recharge_id"]},
    }


class Recharger:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: stripe.StripeClient,
        settings: Settings,
        *,
        schema: str = "payg",
        mailer: Mailer | None = None,
        lease: timedelta = timedelta(minutes=2),
        retry_after: timedelta = timedelta(seconds=30),
        max_age: timedelta = timedelta(hours=6),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.pool = pool
        self.client = client
        self.settings = settings
        self.schema = schema
        self.mailer = mailer or mailer_for(settings)
        self.lease = lease
        self.retry_after = retry_after
        self.max_age = max_age
        self.clock = clock

    async def charge_due(self, *, limit: int = 50) -> ChargeOutcome:
        now = self.clock()
        async with transaction(self.pool, self.schema) as conn:
            claimed = await recharge_store.claim_due_recharges(conn, now, now + self.lease, now - self.max_age, limit)
        results = await asyncio.gather(*(self._charge(row) for row in claimed))
        return ChargeOutcome(results.count("sent"), results.count("failed"), results.count("postponed"))

    async def _charge(self, row: asyncpg.Record) -> str:
        key = row["idempotency_key"]
        try:
            intent = await self.client.v1.payment_intents.create_async(
                payment_intent_params(row),  # type: ignore[arg-type]
                {"idempotency_key": key},
            )
        except stripe.CardError as error:
            return await self._failed(row, error)
        except stripe.StripeError as error:
            if is_retryable(error) or not isinstance(error, stripe.InvalidRequestError):
                return await self._postpone(row, error)
            return await self._failed(row, error)  # e.g. a card that no longer belongs to the customer
        except (TimeoutError, OSError) as error:
            return await self._postpone(row, error)
        await self.record_sent(row, intent.id)
        log.info("recharge sent", account_id=row["account_id"], recharge_id=row["recharge_id"],
                 payment_intent=intent.id, status=intent.status, attempt=row["attempts"])
        return "sent"

    async def record_sent(self, row: asyncpg.Record, payment_intent_id: str) -> None:
        async with transaction(self.pool, self.schema) as conn:
            await recharge_store.recharge_sent(conn, row["recharge_id"], payment_intent_id, self.clock())

    async def _failed(self, row: asyncpg.Record, error: stripe.StripeError) -> str:
        detail = error.error
        intent = getattr(detail, "payment_intent", None) if detail is not None else None
        intent_id = intent.get("id") if isinstance(intent, dict) else getattr(intent, "id", None)
        now = self.clock()
        fact = RechargeFailed(
            account_id=row["account_id"], recharge_id=row["recharge_id"], code=error.code,
            message=(error.user_message or str(error))[:1000],
            payment_intent_id=intent_id if isinstance(intent_id, str) and intent_id.startswith("pi_") else None,
            failed_at=now,
        )
        async with transaction(self.pool, self.schema) as conn:
            await recharge_store.recharge_declined(conn, fact)
            await emit(conn, [fact], producer=PRODUCER)
        log.warning("recharge declined", account_id=row["account_id"], recharge_id=row["recharge_id"],
                    code=error.code)
        return "failed"

    async def _postpone(self, row: asyncpg.Record, error: BaseException) -> str:
        log.warning("recharge not sent, will retry", recharge_id=row["recharge_id"], error=str(error))
        async with transaction(self.pool, self.schema) as conn:
            await recharge_store.postpone_recharge(conn, row["recharge_id"], self.clock() + self.retry_after,
                                         f"{type(error).__name__}: {error}"[:1000])
        return "postponed"

    async def pay_link(self, row: asyncpg.Record) -> str:
        """Where the customer pays the failed amount on-session: the configured Payment Link, or a Checkout
        Session made for this notification (idempotent by its id, so a resend makes no second session)."""
        link = self.settings.next_public_stripe_payment_link_payg
        if link:
            return f"{link}?{urlencode({'client_reference_id': row['account_id']})}"
        customer = await self._customer(row["account_id"])
        session = await self.client.v1.checkout.sessions.create_async(
            checkout_params(self.settings, row["account_id"], row["amount_minor"], customer),  # type: ignore[arg-type]
            {"idempotency_key": f"payg-pay-link-{row['notification_id']}"},
        )
        return str(session.url)

    async def _customer(self, account_id: str) -> str | None:
        async with transaction(self.pool, self.schema) as conn:
            return await queries.customer_of(conn, account_id)

    async def send_notifications(self, *, limit: int = 20) -> int:
        """Send what the fold decided to tell customers; marked sent only after the send succeeded."""
        sent = 0
        async with transaction(self.pool, self.schema) as conn:
            rows = await recharge_store.claim_unsent_notifications(conn, limit)
            for row in rows:
                try:
                    url = row["pay_url"] or await self.pay_link(row)
                    await self.mailer.send(compose(row, url, self.settings.jobmeter_notify_from))
                except (OSError, smtplib.SMTPException, stripe.StripeError) as error:
                    # Left unsent, so the next pass tries again; one stuck notice must not hold up the others.
                    log.warning("payg notification not sent, will retry", notification_id=row["notification_id"],
                                error=str(error))
                    continue
                await recharge_store.notification_sent(conn, row["notification_id"], url, self.clock())
                sent += 1
        return sent


def checkout_params(
    settings: Settings, account_id: str, amount_minor: int | None, customer: str | None
) -> dict[str, Any]:
    """A one-time Checkout Session that tops up the balance and saves the card for off-session recharges."""
    if amount_minor is not None:
        item: dict[str, Any] = {
            "price_data": {"currency": settings.jobmeter_payg_currency, "unit_amount": amount_minor,
                           "product_data": {"name": "jobmeter prepaid balance"}},
            "quantity": 1,
        }
    elif settings.stripe_payg_topup_price_id:
        item = {"price": settings.stripe_payg_topup_price_id, "quantity": 1}
    else:
        raise ValueError("give an amount, or set STRIPE_PAYG_TOPUP_PRICE_ID")
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [item],
        "payment_intent_data": {"setup_future_usage": "off_session"},
        "metadata": {"account_id": account_id, "purpose": "payg_topup"},
        "client_reference_id": account_id,
        "success_url": f"{settings.jobmeter_payg_return_url}?topup=done",
        "cancel_url": f"{settings.jobmeter_payg_return_url}?topup=cancelled",
    }
    if customer:
        params["customer"] = customer
    else:
        params["customer_creation"] = "always"
    return params


def compose(row: asyncpg.Record, url: str, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = sender  # no customer address on file yet: the billing inbox passes it on
    message["Subject"] = "Your automatic top-up did not go through"
    message["Message-ID"] = f"<{row['notification_id']}@jobmeter>"
    minor = row["amount_minor"]
    amount = f"{minor // 100}.{minor % 100:02d} {row['currency'].upper()}"  # two-decimal currencies
    message.set_content(
        f"Account {row['account_id']}: {row['detail']}.\n\nTop up {amount} here, with your card present:\n{url}\n"
    )
    return message


def recharger_for(res: Resources, schema: str = "payg") -> Recharger:
    return Recharger(res.pool, make_client(res.settings), res.settings, schema=schema, lease=LEASE)


async def run_payg_recharger(res: Resources, schema: str = "payg") -> None:
    """Charge and notify until cancelled; a failed pass is logged and the next pass retries."""
    recharger = recharger_for(res, schema)

    async def one_pass() -> bool:
        charged = (await recharger.charge_due()).claimed > 0
        return await recharger.send_notifications() > 0 or charged

    await poll("payg recharger", one_pass, PollPolicy(idle=res.settings.jobmeter_payg_poll_seconds))
