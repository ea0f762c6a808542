"""The fold's side of money going back: a refund or a dispute of a payment that credited a balance (a top-up's
or a recharge's PaymentIntent) moves that balance back, once, whatever the order and the duplicates.

Runs inside the fold's transaction, after the batch's credits (a payment and its refund in one batch, as a replay
may cut them, reverse as they would apart) and before the rules, so a balance pushed below the allowance
suspends the keys as a job's debit would. A refund or dispute of any other payment is not PAYG money: logged and
ignored.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import structlog

from events.envelope import Envelope
from projections.payg import store
from projections.payg.batch import Batch
from projections.payg.config import PaygConfig
from projections.payg.rules import Reversal, dispute_reversals, refund_reversal
from projections.payg.store import Credited, Movement

log = structlog.get_logger(__name__)


async def reverse(conn: asyncpg.Connection, batch: Batch, payg: dict[str, str | None], config: PaygConfig,
                  now: datetime) -> None:
    """The batch's refunds, then its disputes, each against the payment it reverses (the account is locked:
    it is one of `payg`, whose balances the fold locked)."""
    credited = await store.credited_payments(conn, batch.reversed_intents())
    for refund, envelope in batch.refunds:
        payment = _payment(credited, payg, refund.payment_intent_id, charge=refund.charge_id)
        if payment is None:
            continue
        config.check_currency(refund.currency, f"refund of charge {refund.charge_id}")
        already = await store.refunded(conn, refund.charge_id)
        move = refund_reversal(refund.charge_id, refund.refunded_minor, payment.amount_minor, already)
        await _move(conn, payment, [move] if move else [], envelope, now)
    for dispute, envelope in batch.disputes:
        payment = _payment(credited, payg, dispute.payment_intent_id, dispute=dispute.dispute_id)
        if payment is None:
            continue
        config.check_currency(dispute.currency, f"dispute {dispute.dispute_id}")
        debited = await store.disputed(conn, dispute.dispute_id)
        moves = dispute_reversals(dispute.dispute_id, dispute.amount_minor, dispute.status, dispute.closed,
                                  payment.amount_minor, debited)
        await _move(conn, payment, moves, envelope, now)


def ignore(batch: Batch) -> None:
    """A batch whose refunds and disputes reverse no PAYG credit: say so."""
    for refund, _ in batch.refunds:
        _ignored(refund.payment_intent_id, charge=refund.charge_id)
    for dispute, _ in batch.disputes:
        _ignored(dispute.payment_intent_id, dispute=dispute.dispute_id)


def _payment(credited: dict[str, Credited], payg: dict[str, str | None], intent: str,
             **about: str) -> Credited | None:
    payment = credited.get(intent)
    if payment is None or payment.account_id not in payg:
        _ignored(intent, **about)
        return None
    return payment


def _ignored(intent: str, **about: str) -> None:
    log.info("refund or dispute of a payment that credited no PAYG balance ignored", payment_intent=intent, **about)


async def _move(conn: asyncpg.Connection, payment: Credited, moves: list[Reversal], envelope: Envelope,
                now: datetime) -> None:
    movements = [Movement(m.movement_id, payment.account_id, m.kind, m.amount_minor, m.reference,
                          envelope.occurred_at, envelope.event_id) for m in moves]
    for movement in await _recorded(conn, movements, now):
        log.info("balance moved back", account_id=payment.account_id, movement_id=movement.movement_id,
                 amount_minor=movement.amount_minor)


async def _recorded(conn: asyncpg.Connection, movements: list[Movement], now: datetime) -> list[Movement]:
    new = await store.add_movements(conn, movements, now)
    return [m for m in movements if m.movement_id in new]
