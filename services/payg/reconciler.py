"""Asks Stripe what the PAYG fold cannot: the card a top-up saved, and how a recharge ended when no webhook said.

Beside the recharger, same leases-and-outbox shape; it only reads from Stripe (retrieving a PaymentIntent) and
publishes what it found as facts, which the fold applies:
- **Cards.** The fold records a `card_captures` row when a top-up Checkout completes for an account without a
  card. A pass retrieves the top-up's PaymentIntent and emits `PaygCardSaved` with its `payment_method` (event id
  from the PaymentIntent), marking the row sent in the same transaction. A crash before that commit leaves the
  lease to run out and the lookup is made again: the same fact, the same event id, applied once.
- **Late webhooks.** A recharge sent `settle_after` ago and still `requested` is looked up; `succeeded` becomes
  `RechargeConfirmed` (credited as `recharge:<pi>`, the same movement as the webhook's, so whichever comes second
  is a no-op), `requires_payment_method`/`canceled` a `RechargeFailed` (one per recharge, whoever notices first).
  Anything else is asked again `settle_after` later; still undecided `give_up` after it was sent (stuck in
  `requires_action`, say), the PaymentIntent is canceled at Stripe and, once Stripe says it is canceled, the
  recharge fails (`unsettled`): every recharge ends within a bound. (A PaymentIntent that succeeded cannot be
  canceled: the next lookup finds the success.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import stripe
import structlog

from events.envelope import Event, utcnow
from events.payg import PaygCardSaved, RechargeConfirmed, RechargeFailed
from projections.db import transaction
from projections.outbox import emit
from projections.payg import recharge_store
from projections.payg.projection import PRODUCER
from projections.payg.rules import intent_settlement
from services.payg.recharger import run_payg_recharger
from services.platform.poll import PollPolicy, poll
from services.platform.resources import Resources
from services.stripe_adapter.client import is_retryable, make_client

log = structlog.get_logger(__name__)

# The code of a recharge whose PaymentIntent never settled and was canceled.
UNSETTLED = "unsettled"

def _id_of(value: Any) -> str | None:
    """An expandable field: the id whether Stripe sent the id or the object."""
    found = value if isinstance(value, str) else getattr(value, "id", None)
    return found if isinstance(found, str) and found else None


class PaygReconciler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: stripe.StripeClient,
        *,
        schema: str = "payg",
        settle_after: timedelta = timedelta(minutes=10),
        give_up: timedelta = timedelta(hours=1),
        lease: timedelta = timedelta(minutes=2),
        retry_after: timedelta = timedelta(seconds=30),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.pool = pool
        self.client = client
        self.schema = schema
        self.settle_after = settle_after
        self.give_up = give_up
        self.lease = lease
        self.retry_after = retry_after
        self.clock = clock

    async def _retrieve(self, payment_intent_id: str) -> stripe.PaymentIntent:
        return await self.client.v1.payment_intents.retrieve_async(payment_intent_id)

    async def capture_cards(self, *, limit: int = 50) -> int:
        """Look up the cards top-ups saved; returns how many captures were claimed."""
        now = self.clock()
        async with transaction(self.pool, self.schema) as conn:
            claimed = await recharge_store.claim_card_captures(conn, now, now + self.lease, limit)
        await asyncio.gather(*(self._capture(row) for row in claimed))
        return len(claimed)

    async def _capture(self, row: asyncpg.Record) -> None:
        pi = row["payment_intent_id"]
        try:
            intent = await self._retrieve(pi)
        except (stripe.StripeError, TimeoutError, OSError) as error:
            if isinstance(error, stripe.InvalidRequestError) and not is_retryable(error):
                await self._capture_done(row, None, [], f"{type(error).__name__}: {error}")  # e.g. no such intent
            else:
                await self._capture_later(row, error)
            return
        card = _id_of(intent.payment_method)
        if card is None or not card.startswith("pm_"):
            await self._capture_done(row, None, [], f"PaymentIntent {pi} has no saved payment method")
            return
        fact = PaygCardSaved(account_id=row["account_id"], payment_method_id=card,
                             customer_id=row["customer_id"] or _id_of(intent.customer), payment_intent_id=pi,
                             saved_at=self.clock())
        await self._capture_done(row, card, [fact], None)
        log.info("payg card captured", account_id=row["account_id"], payment_intent=pi)

    async def _capture_done(self, row: asyncpg.Record, card: str | None, facts: list[Event], error: str | None) -> None:
        if error is not None:
            log.warning("payg card not captured", account_id=row["account_id"],
                        payment_intent=row["payment_intent_id"], error=error)
        async with transaction(self.pool, self.schema) as conn:
            await emit(conn, facts, producer=PRODUCER)
            await recharge_store.card_capture_done(
                conn, row["payment_intent_id"], self.clock(), card, error and error[:1000]
            )

    async def _capture_later(self, row: asyncpg.Record, error: BaseException) -> None:
        log.warning("payg card lookup failed, will retry", payment_intent=row["payment_intent_id"], error=str(error))
        async with transaction(self.pool, self.schema) as conn:
            await recharge_store.postpone_card_capture(conn, row["payment_intent_id"], self.clock() + self.retry_after,
                                             f"{type(error).__name__}: {error}"[:1000])

    async def settle_overdue(self, *, limit: int = 50) -> int:
        """Ask Stripe about recharges no webhook settled within `settle_after`; returns how many were asked."""
        now = self.clock()
        async with transaction(self.pool, self.schema) as conn:
            claimed = await recharge_store.claim_unsettled(conn, now, now - self.settle_after, limit)
        await asyncio.gather(*(self._settle(row) for row in claimed))
        return len(claimed)

    async def _settle(self, row: asyncpg.Record) -> None:
        pi, recharge = row["payment_intent_id"], row["recharge_id"]
        try:
            intent = await self._retrieve(pi)
        except (stripe.StripeError, TimeoutError, OSError) as error:
            log.warning("recharge lookup failed, will ask again", recharge_id=recharge, payment_intent=pi,
                        error=str(error))
            return  # checked_at was set by the claim: asked again after settle_after
        now = self.clock()
        verdict = intent_settlement(intent.status)
        fact: Event
        if verdict == "succeeded":
            fact = RechargeConfirmed(account_id=row["account_id"], recharge_id=recharge, payment_intent_id=pi,
                                     amount_minor=intent.amount_received or 0, currency=intent.currency.lower(),
                                     confirmed_at=now)
        elif verdict == "failed":
            last = intent.last_payment_error
            code = (last.code or last.decline_code) if last else None
            message = (last.message if last else None) or f"the payment intent is {intent.status}"
            fact = RechargeFailed(account_id=row["account_id"], recharge_id=recharge, code=code,
                                  message=message[:1000], payment_intent_id=pi, failed_at=now)
        elif row["sent_at"] <= now - self.give_up:
            canceled = await self._abandon(row)
            if canceled is None:
                return
            fact = RechargeFailed(account_id=row["account_id"], recharge_id=recharge, code=UNSETTLED,
                                  message=f"still {intent.status} {self.give_up} after it was sent: canceled",
                                  payment_intent_id=pi, failed_at=now)
        else:
            log.info("recharge still unsettled at Stripe", recharge_id=recharge, payment_intent=pi,
                     status=intent.status)
            return
        async with transaction(self.pool, self.schema) as conn:
            await emit(conn, [fact], producer=PRODUCER)
        log.warning("recharge settled without its webhook", account_id=row["account_id"], recharge_id=recharge,
                    payment_intent=pi, status=intent.status)

    async def _abandon(self, row: asyncpg.Record) -> stripe.PaymentIntent | None:
        """Cancel a PaymentIntent that never settled; None when Stripe did not (it succeeded meanwhile, or is
        unreachable): asked again `settle_after` later."""
        pi = row["payment_intent_id"]
        try:
            intent = await self.client.v1.payment_intents.cancel_async(pi)
        except (stripe.StripeError, TimeoutError, OSError) as error:
            log.warning("unsettled recharge not canceled, will ask again", recharge_id=row["recharge_id"],
                        payment_intent=pi, error=str(error))
            return None
        return intent if intent.status == "canceled" else None


def reconciler_for(res: Resources, schema: str = "payg") -> PaygReconciler:
    s = res.settings
    return PaygReconciler(res.pool_for(schema), make_client(s), schema=schema,
                          lease=timedelta(seconds=s.jobmeter_payg_lease_seconds),
                          settle_after=timedelta(seconds=s.jobmeter_payg_settle_after_seconds),
                          give_up=timedelta(seconds=s.jobmeter_payg_recharge_give_up_seconds))


async def run_payg_reconciler(res: Resources, schema: str = "payg") -> None:
    """Capture saved cards and settle overdue recharges until cancelled; a failed pass is logged and retried."""
    reconciler = reconciler_for(res, schema)

    async def one_pass() -> bool:
        captured = await reconciler.capture_cards() > 0
        return await reconciler.settle_overdue() > 0 or captured

    await poll("payg reconciler", one_pass, PollPolicy(idle=res.settings.jobmeter_payg_poll_seconds))


async def run_payg_workers(res: Resources, schema: str) -> None:
    """Everything that runs beside the payg consumer: the recharger and this reconciler."""
    await asyncio.gather(run_payg_recharger(res, schema), run_payg_reconciler(res, schema))
