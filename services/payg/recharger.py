"""Charges what the PAYG fold requested: one off-session PaymentIntent per recharge at most, and every recharge
ends (`succeeded`, `failed` or `canceled`) within a bound, whatever Stripe answers.

Order of steps, and what a crash between them does:
1. the fold recorded the recharge (`requested`, `recorded_at` = the wall clock) with the positions of the jobs
   that caused it;
2. a claim leases it (`claimed_until`) as a new attempt (`attempts + 1`, idempotency key `<recharge id>:<attempt>`)
   — a crash after it leaves the lease to run out;
3. an attempt after the first (a 5xx, a timeout or a crash may have reached Stripe) first lists the customer's
   PaymentIntents (a strongly consistent list, not search) for one carrying `metadata.recharge_id`: found, it is
   recorded as sent and nothing is created — so the card is charged at most once per recharge;
4. a recharge no longer needed (the balance is at or above its threshold now) is canceled, not charged
   (`RechargeCanceled`: no failure counted, nobody told, the fold decides afresh);
5. past `give_up` after it was recorded, a recharge still unsent ends failed (`unreachable`) — the fold backs off
   and requests the next one;
6. otherwise the PaymentIntent is created and confirmed under this attempt's key, and its id and `sent_at`
   recorded. Stripe saves a 500 under its key and replays it for 24 hours: a new key per attempt is what lets a
   later attempt succeed. Transient errors (5xx, timeouts, authentication and idempotency errors) back off,
   doubling per attempt, until the bound above ends them.
The money is credited when Stripe's `payment_intent.succeeded` arrives on the bus (the fold does it), or when
`services.payg.reconciler` finds the PaymentIntent succeeded because that webhook is late. A decline
or `authentication_required` becomes a `RechargeFailed` in the outbox; the fold backs off, counts it, and writes
a notification, which `send_notifications` delivers with a link to pay on-session.

Old history: a rebuild into the replay shadow runs no worker, so it charges nothing. A recharge the live fold
recorded more than `history` after the jobs that asked for it (the consumer was that far behind, or the log is
being folded again) is looked up at Stripe before anything else — its recharge id is the one an earlier life of
the fold used, so a PaymentIntent made then is found and recorded, not made again — and, when none is found,
canceled as `stale` rather than charged on a balance the fold may not have caught up with: the cancellation comes
back through the log after what the fold was behind on, and the rules decide then, at a current log time.
Rows recorded before `recorded_at` existed carry their log time there, so an old unsent one ends at the first pass.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlencode

import asyncpg
import stripe
import structlog

from events.envelope import utcnow
from events.payg import RechargeCanceled, RechargeFailed
from jobmeter.settings import Settings
from projections.db import transaction
from projections.outbox import emit
from projections.payg import queries, recharge_store
from projections.payg.projection import PRODUCER
from services.accounts.profiles import Profiles, contacts_of, profiles_of
from services.payg.attempts import (
    ChargeOutcome,
    Result,
    from_history,
    payment_intent_params,
    pick_intent,
    retry_delay,
)
from services.payg.notices import checkout_params as checkout_params  # re-exported for services.payg.commands
from services.payg.notices import compose
from services.platform.mail import Mailer, mailer_for
from services.platform.poll import PollPolicy, poll
from services.platform.resources import Resources
from services.stripe_adapter.client import is_retryable, make_client

log = structlog.get_logger(__name__)

# A recharge recorded this much later (wall clock) than its jobs were logged comes from history.
HISTORY = timedelta(hours=6)
# How far before its request a recharge's PaymentIntent may have been created (clocks differ): the lookup's window.
LOOKUP_SLACK = timedelta(days=1)

# What the code of a recharge given up on says, in RechargeFailed and the recharge's row.
UNREACHABLE = "unreachable"

class Recharger:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: stripe.StripeClient,
        settings: Settings,
        *,
        schema: str = "payg",
        mailer: Mailer | None = None,
        lease: timedelta | None = None,  # JOBMETER_PAYG_LEASE_SECONDS unless given
        retry_after: timedelta | None = None,  # after a first transient error; JOBMETER_PAYG_RECHARGE_RETRY_SECONDS
        retry_max: timedelta | None = None,  # doubled per attempt up to it; JOBMETER_PAYG_RECHARGE_RETRY_MAX_SECONDS
        history: timedelta = HISTORY,
        give_up: timedelta | None = None,
        clock: Callable[[], datetime] = utcnow,
        profiles: Profiles | None = None,  # the accounts' contact addresses, where the notices go
    ) -> None:
        self.pool, self.profiles = pool, profiles
        self.client = client
        self.settings = settings
        self.schema = schema
        self.mailer = mailer or mailer_for(settings)
        self.lease = timedelta(seconds=settings.jobmeter_payg_lease_seconds) if lease is None else lease
        self.retry_after = (timedelta(seconds=settings.jobmeter_payg_recharge_retry_seconds) if retry_after is None
                            else retry_after)
        self.retry_max = (timedelta(seconds=settings.jobmeter_payg_recharge_retry_max_seconds) if retry_max is None
                          else retry_max)
        self.history = history
        self.give_up = give_up or timedelta(seconds=settings.jobmeter_payg_recharge_give_up_seconds)
        self.clock = clock

    async def charge_due(self, *, limit: int = 50) -> ChargeOutcome:
        now = self.clock()
        async with transaction(self.pool, self.schema) as conn:
            claimed = await recharge_store.claim_due_recharges(conn, now, now + self.lease, limit)
        results = await asyncio.gather(*(self._charge(row) for row in claimed))
        return ChargeOutcome(results.count("sent"), results.count("failed"), results.count("postponed"),
                             results.count("canceled"))

    async def _charge(self, row: asyncpg.Record) -> Result:
        old = from_history(row, self.history)
        if row["attempts"] > 1 or old:
            # An earlier attempt (or an earlier life of the fold) may have made the PaymentIntent: never a second.
            try:
                found = await self.find_intent(row)
            except (stripe.StripeError, TimeoutError, OSError) as error:
                if self._past_bound(row):
                    return await self._give_up(row, error)
                return await self._postpone(row, error)
            if found is not None:
                await self.record_sent(row, found.id)
                log.warning("recharge found at Stripe, recorded as sent", account_id=row["account_id"],
                            recharge_id=row["recharge_id"], payment_intent=found.id, status=found.status,
                            attempt=row["attempts"])
                return "sent"
        need = await self._need(row)
        if need is not None and need["balance_minor"] >= need["threshold_minor"]:
            return await self._cancel(row, "not_needed", f"the balance ({need['balance_minor']}) is at or above "
                                                         f"the threshold ({need['threshold_minor']}) now")
        if old:
            return await self._cancel(row, "stale", f"requested at {row['requested_at'].isoformat()}, recorded at "
                                                    f"{row['recorded_at'].isoformat()}: from history, never sent")
        if self._past_bound(row):
            return await self._give_up(row, row["last_error"] or "not sent in time")
        return await self._create(row)

    async def _create(self, row: asyncpg.Record) -> Result:
        """One attempt, under its own idempotency key."""
        try:
            intent = await self.client.v1.payment_intents.create_async(
                payment_intent_params(row),  # type: ignore[arg-type]
                {"idempotency_key": row["idempotency_key"]},
            )
        except stripe.CardError as error:
            return await self._failed(row, error)
        except stripe.StripeError as error:
            if isinstance(error, stripe.InvalidRequestError) and not is_retryable(error):
                return await self._failed(row, error)  # e.g. a card that no longer belongs to the customer
            # 5xx, rate limits, authentication, idempotency: the next attempt (a new key) looks up first.
            return await self._postpone(row, error)
        except (TimeoutError, OSError) as error:
            return await self._postpone(row, error)
        await self.record_sent(row, intent.id)
        log.info("recharge sent", account_id=row["account_id"], recharge_id=row["recharge_id"],
                 payment_intent=intent.id, status=intent.status, attempt=row["attempts"])
        return "sent"

    def _past_bound(self, row: asyncpg.Record) -> bool:
        recorded: datetime = row["recorded_at"]
        return self.clock() >= recorded + self.give_up

    async def find_intent(self, row: asyncpg.Record) -> stripe.PaymentIntent | None:
        """The PaymentIntent an earlier attempt made for this recharge, if any: the customer's PaymentIntents
        listed (a list is strongly consistent; search is not), filtered by `metadata.recharge_id`."""
        since = min(row["requested_at"], row["recorded_at"]) - LOOKUP_SLACK
        page = await self.client.v1.payment_intents.list_async(
            {"customer": row["customer_id"], "created": {"gte": int(since.timestamp())}, "limit": 100}
        )
        intents = list(page.data)
        while page.has_more and page.data:
            page = await page.next_page_async()
            intents += page.data
        return pick_intent(intents, row["recharge_id"])

    async def _need(self, row: asyncpg.Record) -> asyncpg.Record | None:
        async with transaction(self.pool, self.schema) as conn:
            return await queries.recharge_need(conn, row["account_id"])

    async def record_sent(self, row: asyncpg.Record, payment_intent_id: str) -> None:
        async with transaction(self.pool, self.schema) as conn:
            await recharge_store.recharge_sent(conn, row["recharge_id"], payment_intent_id, self.clock())

    async def _failed(self, row: asyncpg.Record, error: stripe.StripeError) -> Result:
        detail = error.error
        intent = getattr(detail, "payment_intent", None) if detail is not None else None
        intent_id = intent.get("id") if isinstance(intent, dict) else getattr(intent, "id", None)
        await self._end_failed(row, RechargeFailed(
            account_id=row["account_id"], recharge_id=row["recharge_id"], code=error.code,
            message=(error.user_message or str(error))[:1000],
            payment_intent_id=intent_id if isinstance(intent_id, str) and intent_id.startswith("pi_") else None,
            failed_at=self.clock(),
        ))
        log.warning("recharge declined", account_id=row["account_id"], recharge_id=row["recharge_id"],
                    code=error.code)
        return "failed"

    async def _give_up(self, row: asyncpg.Record, error: BaseException | str) -> Result:
        why = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        await self._end_failed(row, RechargeFailed(
            account_id=row["account_id"], recharge_id=row["recharge_id"], code=UNREACHABLE,
            message=f"not sent to Stripe within {self.give_up} after {row['attempts']} attempt(s); last: {why}"[:1000],
            failed_at=self.clock(),
        ))
        log.error("recharge given up", account_id=row["account_id"], recharge_id=row["recharge_id"],
                  attempts=row["attempts"], error=why)
        return "failed"

    async def _end_failed(self, row: asyncpg.Record, fact: RechargeFailed) -> None:
        async with transaction(self.pool, self.schema) as conn:
            await recharge_store.recharge_declined(conn, fact)
            await emit(conn, [fact], producer=PRODUCER)

    async def _cancel(self, row: asyncpg.Record, reason: Literal["not_needed", "stale"], detail: str) -> Result:
        now = self.clock()
        fact = RechargeCanceled(account_id=row["account_id"], recharge_id=row["recharge_id"], reason=reason,
                                detail=detail[:1000], canceled_at=now)
        async with transaction(self.pool, self.schema) as conn:
            await recharge_store.recharge_ended_unsent(conn, row["recharge_id"], now, f"canceled: {detail}")
            await emit(conn, [fact], producer=PRODUCER)
        log.info("recharge canceled", account_id=row["account_id"], recharge_id=row["recharge_id"], reason=reason)
        return "canceled"

    async def _postpone(self, row: asyncpg.Record, error: BaseException) -> Result:
        wait = retry_delay(row["attempts"], self.retry_after, self.retry_max)
        log.warning("recharge not sent, will retry", recharge_id=row["recharge_id"], attempt=row["attempts"],
                    retry_in=wait.total_seconds(), error=str(error))
        async with transaction(self.pool, self.schema) as conn:
            await recharge_store.postpone_recharge(conn, row["recharge_id"], self.clock() + wait,
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
        """Send what the fold decided to tell customers: each notice leased in a short transaction, sent with none
        open, and marked sent in one of its own only after the send succeeded, so a failed commit cannot undo the
        mark of a message that went out (a crash resends at most the one being sent, under the same Message-ID)."""
        sent = 0
        async with transaction(self.pool, self.schema) as conn:
            rows = await recharge_store.claim_unsent_notifications(conn, limit, self.clock(), self.lease)
        to = await contacts_of(self.profiles, [r["account_id"] for r in rows])  # no invoice names an address here
        for row in rows:
            try:
                url = row["pay_url"] or await self.pay_link(row)
                await self.mailer.send(compose(row, url, self.settings.jobmeter_notify_from, to.get(row["account_id"])))
            except (OSError, smtplib.SMTPException, stripe.StripeError) as error:
                # Left unsent, so the next pass tries again; one stuck notice must not hold up the others.
                log.warning("payg notification not sent, will retry", notification_id=row["notification_id"],
                            error=str(error))
                async with transaction(self.pool, self.schema) as conn:
                    await recharge_store.notification_unsent(conn, row["notification_id"])
                continue
            async with transaction(self.pool, self.schema) as conn:
                await recharge_store.notification_sent(conn, row["notification_id"], url, self.clock())
            sent += 1
        return sent


def recharger_for(res: Resources, schema: str = "payg") -> Recharger:
    return Recharger(res.pool_for(schema), make_client(res.settings), res.settings, schema=schema,
                     profiles=profiles_of(res))


async def run_payg_recharger(res: Resources, schema: str = "payg") -> None:
    """Charge and notify until cancelled; a failed pass is logged and the next pass retries."""
    recharger = recharger_for(res, schema)

    async def one_pass() -> bool:
        charged = (await recharger.charge_due()).claimed > 0
        return await recharger.send_notifications() > 0 or charged

    await poll("payg recharger", one_pass, PollPolicy(idle=res.settings.jobmeter_payg_poll_seconds))
