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
  Anything else is asked again `settle_after` later.
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
from projections.payg.projection import PRODUCER
from projections.payg.rules import intent_settlement
from services.payg.recharger import run_payg_recharger
from services.platform.resources import Resources
from services.stripe_adapter.client import is_retryable, make_client

log = structlog.get_logger(__name__)

# How long a claimed card lookup is left to its claimer before another pass may make it again.
LEASE = timedelta(minutes=2)

CLAIM_CAPTURES = """
UPDATE card_captures SET claimed_until = $2, attempts = attempts + 1
WHERE payment_intent_id IN (
    SELECT payment_intent_id FROM card_captures
    WHERE sent_at IS NULL AND saved_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $1)
    ORDER BY requested_at LIMIT $3 FOR UPDATE SKIP LOCKED
)
RETURNING *
"""

# `checked_at` is both the lease and the pace: a recharge is asked about at most once per `settle_after`.
CLAIM_UNSETTLED = """
UPDATE recharges SET checked_at = $1
WHERE recharge_id IN (
    SELECT recharge_id FROM recharges
    WHERE state = 'requested' AND payment_intent_id IS NOT NULL AND failure_code IS NULL AND sent_at <= $2
      AND (checked_at IS NULL OR checked_at <= $2)
    ORDER BY sent_at LIMIT $3 FOR UPDATE SKIP LOCKED
)
RETURNING *
"""


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
        lease: timedelta = timedelta(minutes=2),
        retry_after: timedelta = timedelta(seconds=30),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.pool = pool
        self.client = client
        self.schema = schema
        self.settle_after = settle_after
        self.lease = lease
        self.retry_after = retry_after
        self.clock = clock

    async def _retrieve(self, payment_intent_id: str) -> stripe.PaymentIntent:
        return await self.client.v1.payment_intents.retrieve_async(payment_intent_id)

    async def capture_cards(self, *, limit: int = 50) -> int:
        """Look up the cards top-ups saved; returns how many captures were claimed."""
        now = self.clock()
        async with transaction(self.pool, self.schema) as conn:
            claimed = await conn.fetch(CLAIM_CAPTURES, now, now + self.lease, limit)
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
            await conn.execute(
                "UPDATE card_captures SET sent_at = $2, payment_method_id = $3, last_error = $4 "
                "WHERE payment_intent_id = $1",
                row["payment_intent_id"], self.clock(), card, error and error[:1000],
            )

    async def _capture_later(self, row: asyncpg.Record, error: BaseException) -> None:
        log.warning("payg card lookup failed, will retry", payment_intent=row["payment_intent_id"], error=str(error))
        async with transaction(self.pool, self.schema) as conn:
            await conn.execute(
                "UPDATE card_captures SET claimed_until = $2, last_error = $3 WHERE payment_intent_id = $1",
                row["payment_intent_id"], self.clock() + self.retry_after, f"{type(error).__name__}: {error}"[:1000],
            )

    async def settle_overdue(self, *, limit: int = 50) -> int:
        """Ask Stripe about recharges no webhook settled within `settle_after`; returns how many were asked."""
        now = self.clock()
        async with transaction(self.pool, self.schema) as conn:
            claimed = await conn.fetch(CLAIM_UNSETTLED, now, now - self.settle_after, limit)
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
        else:
            log.info("recharge still unsettled at Stripe", recharge_id=recharge, payment_intent=pi,
                     status=intent.status)
            return
        async with transaction(self.pool, self.schema) as conn:
            await emit(conn, [fact], producer=PRODUCER)
        log.warning("recharge settled without its webhook", account_id=row["account_id"], recharge_id=recharge,
                    payment_intent=pi, status=intent.status)


def reconciler_for(res: Resources, schema: str = "payg") -> PaygReconciler:
    settle_after = timedelta(seconds=res.settings.jobmeter_payg_settle_after_seconds)
    return PaygReconciler(res.pool, make_client(res.settings), schema=schema, settle_after=settle_after, lease=LEASE)


async def run_payg_reconciler(res: Resources, schema: str = "payg") -> None:
    """Capture saved cards and settle overdue recharges until cancelled; a failed pass is logged and retried."""
    reconciler = reconciler_for(res, schema)
    idle = res.settings.jobmeter_payg_poll_seconds
    while True:
        busy = False
        try:
            busy = await reconciler.capture_cards() > 0
            busy = await reconciler.settle_overdue() > 0 or busy
        except Exception as error:  # noqa: BLE001 — leases and unsent rows are retried; keep the loop alive
            log.error("payg reconciler pass failed", error=str(error), error_type=type(error).__name__)
        if not busy:
            await asyncio.sleep(idle)


async def run_payg_workers(res: Resources, schema: str) -> None:
    """Everything that runs beside the payg consumer: the recharger and this reconciler."""
    await asyncio.gather(run_payg_recharger(res, schema), run_payg_reconciler(res, schema))
