"""The fold's side of money going back: a refund or a dispute of a payment that credited a balance (a top-up's
or a recharge's PaymentIntent) moves that balance back, once, whatever the order and the duplicates, and says so
on the bus (`BalanceReversed`, one per movement).

Stripe does not order its webhooks, and a consumer replaying or lagging may meet `charge.refunded` or
`charge.dispute.*` before the `checkout.session.completed` or `payment_intent.succeeded` that credited the
balance: such a refund or dispute is parked (`parked_reversals`, by PaymentIntent, as it was logged) and applied
right after its payment's credit is folded, in whatever later batch, with the same rules: refund-then-credit nets
what credit-then-refund does. One of a payment that never credits PAYG (a subscription invoice's charge) stays
parked, harmless; the doctor does not list it, as nothing is wrong and there is nothing to resolve.

Runs inside the fold's transaction, after the batch's credits (a payment and its refund in one batch, as a replay
may cut them, reverse as they would apart) and before the rules, so a balance pushed below the allowance
suspends the keys as a job's debit would. Every payment the batch credits or reverses is locked first
(`reversal_store.lock_payments`), so a credit and a refund folded at once by two consumers never miss each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog

from events.envelope import Envelope, Event
from events.payg import BalanceReversed
from projections.payg import reversal_store, store
from projections.payg.batch import Batch, parked_reversal
from projections.payg.config import PaygConfig
from projections.payg.reversal_store import Parked
from projections.payg.rules import Reversal, dispute_reversals, plan_reversals, refund_reversal
from projections.payg.store import Credited, Movement
from projections.payg.stripe_events import Dispute, Refund

log = structlog.get_logger(__name__)

lock_payments = reversal_store.lock_payments


@dataclass(frozen=True)
class Pending:
    """A refund or a dispute, from the batch or parked, with the record it came in."""

    reversal: Refund | Dispute
    envelope: Envelope
    charge_id: str | None

    @property
    def key(self) -> str:
        r = self.reversal
        if isinstance(r, Refund):
            return f"refund:{r.charge_id}:{r.refunded_minor}"
        return f"dispute:{r.dispute_id}:{r.status}:{'closed' if r.closed else 'open'}"

    @property
    def payment_intent_id(self) -> str:
        return self.reversal.payment_intent_id


def pending_of(batch: Batch) -> list[Pending]:
    """The batch's refunds, then its disputes, each in log order."""
    return ([Pending(r, e, r.charge_id) for r, e in batch.refunds]
            + [Pending(d, e, batch.dispute_charges.get(d.dispute_id)) for d, e in batch.disputes])


async def park(conn: asyncpg.Connection, batch: Batch) -> None:
    """A batch none of whose refunds and disputes reverses a credited payment: they all wait."""
    await _park(conn, pending_of(batch))


async def reverse(conn: asyncpg.Connection, batch: Batch, payg: dict[str, str | None], config: PaygConfig,
                  credits: set[str], now: datetime) -> list[Event]:
    """What was parked for the payments this batch credited (`credits`), then the batch's own refunds and
    disputes, each against the payment it reverses (the account is locked: it is one of `payg`, whose balances the
    fold locked); the others are parked. Returns the events of the movements recorded now."""
    parked = [p for row in await reversal_store.parked_for(conn, credits) for p in _unparked(row)]
    arrived = pending_of(batch)
    credited = await store.credited_payments(conn, {p.payment_intent_id for p in parked + arrived})
    plan = plan_reversals(parked, arrived, credited)
    out: list[Event] = []
    for pending in plan.apply:
        payment = credited[pending.payment_intent_id]
        if payment.account_id not in payg:  # credited once, billed otherwise now: not PAYG money any more
            _ignored(pending)
            continue
        out += await _apply(conn, pending, payment, config, now)
    await reversal_store.release(conn, plan.released)
    await _park(conn, plan.park)
    return out


def _unparked(row: Parked) -> list[Pending]:
    return pending_of(parked_reversal(row.envelope))


async def _apply(conn: asyncpg.Connection, pending: Pending, payment: Credited, config: PaygConfig,
                 now: datetime) -> list[Event]:
    r = pending.reversal
    if isinstance(r, Refund):
        config.check_currency(r.currency, f"refund of charge {r.charge_id}")
        move = refund_reversal(r.charge_id, r.refunded_minor, payment.amount_minor,
                               await store.refunded(conn, r.charge_id))
        moves = [move] if move else []
    else:
        config.check_currency(r.currency, f"dispute {r.dispute_id}")
        moves = dispute_reversals(r.dispute_id, r.amount_minor, r.status, r.closed, payment.amount_minor,
                                  await store.disputed(conn, r.dispute_id))
    movements = [Movement(m.movement_id, payment.account_id, m.kind, m.amount_minor, m.reference,
                          pending.envelope.occurred_at, pending.envelope.event_id) for m in moves]
    new = await store.add_movements(conn, movements, now)
    out: list[Event] = []
    for move in moves:
        if move.movement_id in new:
            log.info("balance moved back", account_id=payment.account_id, movement_id=move.movement_id,
                     amount_minor=move.amount_minor)
            out.append(_reversed(pending, payment, move))
    return out


def _reversed(pending: Pending, payment: Credited, move: Reversal) -> BalanceReversed:
    r = pending.reversal
    dispute = r.dispute_id if isinstance(r, Dispute) else None
    reason = "refund" if move.kind == "refund" else "dispute_won" if move.amount_minor > 0 else "dispute"
    return BalanceReversed(
        account_id=payment.account_id, amount_minor=abs(move.amount_minor), currency=r.currency, reason=reason,
        payment_intent_id=r.payment_intent_id, charge_id=pending.charge_id, dispute_id=dispute,
        movement_id=move.movement_id, reversed_at=pending.envelope.occurred_at,
    )


async def _park(conn: asyncpg.Connection, pending: list[Pending]) -> None:
    rows = [Parked(p.key, p.payment_intent_id, p.envelope.model_dump_json(), p.envelope.occurred_at)
            for p in pending]
    if await reversal_store.park(conn, rows):
        for p in pending:
            log.info("refund or dispute parked until its payment credits a balance",
                     payment_intent=p.payment_intent_id, parked_key=p.key)


def _ignored(pending: Pending) -> None:
    log.info("refund or dispute of a payment that credited no PAYG balance ignored",
             payment_intent=pending.payment_intent_id, key=pending.key)
