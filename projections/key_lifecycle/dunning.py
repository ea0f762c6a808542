"""The dunning policy: when a customer's Stripe events suspend or restore their API keys. Pure, no I/O.

Stripe delivers events more than once and out of order, so nothing here rests on arrival order:
- *Decisive* events settle whether keys work: a failure with no further attempt, an uncollectible invoice,
  a subscription `unpaid`/`canceled` (suspend); `invoice.paid`, a subscription back to `active` (restore).
  The latest by Stripe's `created` wins; an older one, or one already applied (by id), changes nothing.
- *Past-due signals* (a failure Stripe will retry, a subscription `past_due`) open a past-due episode; it
  counts from its earliest signal newer than the latest decision, and suspends once it outlasts the grace
  period, measured by the latest time the events (or the dunning clock's ticks) show has passed.
- An invoice is final once paid: a `payment_failed` for an invoice seen paid is ignored whenever it arrives.
So the outcome depends on which events happened, not on the order they arrived in (ties within one second
aside: Stripe's times are seconds, and those go by arrival).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from events.stripe import PastDueGraceExpired, StripeEventReceived

Standing = Literal["good", "past_due", "suspended"]


@dataclass(frozen=True)
class DunningPolicy:
    """Everything the policy can be tuned by, in one place."""

    past_due_grace: timedelta = timedelta(days=7)
    suspend_statuses: frozenset[str] = frozenset({"unpaid", "canceled", "incomplete_expired"})
    good_statuses: frozenset[str] = frozenset({"active", "trialing"})
    past_due_statuses: frozenset[str] = frozenset({"past_due"})
    remembered: int = 50  # paid invoices and past-due signals kept per customer


DEFAULT_POLICY = DunningPolicy()


@dataclass(frozen=True)
class DunningState:
    """One customer's standing, and what the ordering rules remember."""

    standing: Standing = "good"
    reason: str | None = None
    decided_at: datetime | None = None  # `created` of the latest decisive event
    decided_ids: frozenset[str] = frozenset()  # decisive event ids applied at `decided_at`
    suspends: bool = False  # what that decision was
    decided_reason: str | None = None
    signals: tuple[datetime, ...] = ()  # past-due signal times newer than `decided_at`, sorted
    clock: datetime | None = None  # the latest time known to have passed
    paid_invoices: tuple[str, ...] = ()

    @property
    def past_due_since(self) -> datetime | None:
        return self.signals[0] if self.signals else None


@dataclass(frozen=True)
class Suspend:
    reason: str


@dataclass(frozen=True)
class Restore:
    reason: str


Action = Suspend | Restore


@dataclass(frozen=True)
class Decisive:
    suspends: bool
    reason: str
    paid_invoice: str | None = None


@dataclass(frozen=True)
class Signal:
    """A past-due signal."""


@dataclass(frozen=True)
class Ignored:
    why: str


Reading = Decisive | Signal | Ignored


def read(event: StripeEventReceived, state: DunningState, policy: DunningPolicy = DEFAULT_POLICY) -> Reading:
    """What one Stripe event says about the customer, on its own."""
    obj = event.data_object
    object_id = str(obj.get("id", ""))
    if event.type == "invoice.payment_failed":
        if object_id in state.paid_invoices or obj.get("status") == "paid":
            return Ignored("the invoice is already paid")
        if obj.get("next_payment_attempt") is None:
            attempts = obj.get("attempt_count")
            return Decisive(True, f"payment of invoice {object_id} failed after {attempts} attempt(s); "
                                  "Stripe will not retry")
        return Signal()
    if event.type == "invoice.paid":
        return Decisive(False, f"invoice {object_id} paid", paid_invoice=object_id or None)
    if event.type == "invoice.marked_uncollectible":
        return Decisive(True, f"invoice {object_id} marked uncollectible")
    if event.type.startswith("customer.subscription."):
        status = obj.get("status")
        if status in policy.suspend_statuses:
            return Decisive(True, f"subscription {object_id} is {status}")
        if status in policy.good_statuses:
            return Decisive(False, f"subscription {object_id} is {status}")
        if status in policy.past_due_statuses:
            return Signal()
        return Ignored(f"subscription status {status!r} changes nothing")
    return Ignored(f"{event.type} is not a dunning signal")


def decide(
    state: DunningState, event: StripeEventReceived, policy: DunningPolicy = DEFAULT_POLICY
) -> tuple[DunningState, list[Action]]:
    """Apply one Stripe event to a customer's standing; returns the new state and what must happen to the keys."""
    reading = read(event, state, policy)
    at, decided = event.created, state.decided_at
    if isinstance(reading, Ignored):
        return state, []
    if isinstance(reading, Signal):
        if decided is not None and at <= decided:
            return state, []  # the decision after it already settled the matter
        signals = tuple(sorted({*state.signals, at}))[: policy.remembered]
        new = replace(state, signals=signals, clock=_later(state.clock, at))
    else:
        if decided is not None and (at < decided or (at == decided and event.stripe_event_id in state.decided_ids)):
            return state, []
        ids = state.decided_ids | {event.stripe_event_id} if at == decided else frozenset({event.stripe_event_id})
        paid = state.paid_invoices
        if reading.paid_invoice and reading.paid_invoice not in paid:
            paid = (*paid, reading.paid_invoice)[-policy.remembered :]
        new = replace(
            state, decided_at=at, decided_ids=ids, suspends=reading.suspends, decided_reason=reading.reason,
            signals=tuple(s for s in state.signals if s > at), clock=_later(state.clock, at), paid_invoices=paid,
        )
    return settle(state, new, policy)


def expire(
    state: DunningState, tick: PastDueGraceExpired, policy: DunningPolicy = DEFAULT_POLICY
) -> tuple[DunningState, list[Action]]:
    """The dunning clock's tick: time has passed up to `tick.deadline`, though Stripe said nothing."""
    if state.clock is not None and tick.deadline <= state.clock:
        return state, []
    return settle(state, replace(state, clock=tick.deadline), policy)


def grace_deadline(state: DunningState, policy: DunningPolicy = DEFAULT_POLICY) -> datetime | None:
    """When the open past-due episode runs out of grace, if one is open and keys still work."""
    if state.standing != "past_due" or state.past_due_since is None:
        return None
    return state.past_due_since + policy.past_due_grace


def settle(
    before: DunningState, state: DunningState, policy: DunningPolicy
) -> tuple[DunningState, list[Action]]:
    """The standing the remembered facts add up to, and the key action if keys start or stop working."""
    since = state.past_due_since
    if state.suspends:
        standing: Standing = "suspended"
        reason = state.decided_reason
    elif since is not None and state.clock is not None and state.clock - since >= policy.past_due_grace:
        standing, reason = "suspended", f"past due for more than {_days(policy.past_due_grace)}"
    elif since is not None:
        standing, reason = "past_due", f"past due since {since:%Y-%m-%d %H:%M} UTC"
    else:
        standing, reason = "good", None
    after = replace(state, standing=standing, reason=reason)
    if standing == "suspended" and before.standing != "suspended":
        return after, [Suspend(reason or "payment failed")]
    if standing != "suspended" and before.standing == "suspended":
        return after, [Restore(state.decided_reason or "paid")]
    return after, []


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def _days(span: timedelta) -> str:
    return f"{span.days} day(s)" if span.days else f"{int(span.total_seconds())} s"
