"""The dunning policy: when a customer's Stripe events suspend or restore their API keys. Pure, no I/O.

Stripe delivers events more than once and out of order, so the outcome depends on which events happened,
never on the order they arrived in. Three rules, each a function of the set of events:
- *Invoices* (`invoices.py`), one fact per invoice that only moves forward. Keys stay suspended while ANY
  invoice has failed for good (`invoice.payment_failed` with `next_payment_attempt: null`, or
  `invoice.marked_uncollectible`) and is not settled: `invoice.paid` or `invoice.voided` settle it; an
  uncollectible one is also let go when the policy writes those off (`write_off_uncollectible`, default off).
  Paying a later invoice does not pay an earlier one.
- *The subscription*, latest decision by Stripe's `created` wins: `unpaid`, `canceled`, `incomplete_expired`
  and `paused` (`suspend_paused`, default on; `customer.subscription.paused`) suspend; `active`/`trialing`
  (`customer.subscription.resumed` included) and `invoice.paid` restore. An older decision, or one already
  applied (by id), changes nothing. This rule never lifts the invoice rule: Stripe sets a subscription's status
  from its *latest* invoice, so a subscription turns `active` again when a newer invoice is paid while an older
  one stays open after its last attempt (Stripe stops retrying it, it does not write it off). Restoring keys
  then would forgive that debt without anyone deciding to; so an `active` subscription with an open failed
  invoice stays suspended until that invoice is paid, voided, or (by policy) written off as uncollectible.
- *Past due*: an invoice Stripe will retry, or a subscription `past_due`, opens an episode from its earliest
  signal (a retried invoice's until it is settled or fails for good; a `past_due` status's until a newer
  subscription decision); keys are suspended once it outlasts the grace period, measured by the latest time the
  events (or the dunning clock's ticks) show has passed.
Ties within one second between subscription decisions go by arrival (Stripe's times are seconds); the invoice
rule has no ties. The state is bounded by `remembered` (see `invoices.record` for what is forgotten first).
`pause_collection` (status stays `active`) is not a pause here: its invoices are kept as drafts, voided or
marked uncollectible, and the invoice rule reads those.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from events.stripe import PastDueGraceExpired, StripeEventReceived
from projections.key_lifecycle.invoices import Invoice, holding, record, retried_since

Standing = Literal["good", "past_due", "suspended"]


@dataclass(frozen=True)
class DunningPolicy:
    """Everything the policy can be tuned by, in one place."""

    past_due_grace: timedelta = timedelta(days=7)
    suspend_statuses: frozenset[str] = frozenset({"unpaid", "canceled", "incomplete_expired"})
    good_statuses: frozenset[str] = frozenset({"active", "trialing"})
    past_due_statuses: frozenset[str] = frozenset({"past_due"})
    suspend_paused: bool = True  # a paused subscription (trial ended with no payment method) is not paid for
    write_off_uncollectible: bool = False  # an uncollectible invoice is still owed unless the operator says not
    remembered: int = 50  # invoices and past-due signals kept per customer


DEFAULT_POLICY = DunningPolicy()


@dataclass(frozen=True)
class DunningState:
    """One customer's standing, and what the ordering rules remember."""

    standing: Standing = "good"
    reason: str | None = None
    decided_at: datetime | None = None  # `created` of the latest subscription decision
    decided_ids: frozenset[str] = frozenset()  # decision event ids applied at `decided_at`
    suspends: bool = False  # what that decision was
    decided_reason: str | None = None
    signals: tuple[datetime, ...] = ()  # `past_due` status times newer than `decided_at`, sorted
    clock: datetime | None = None  # the latest time known to have passed
    invoices: tuple[Invoice, ...] = ()  # sorted by id

    @property
    def past_due_since(self) -> datetime | None:
        starts = [t for t in (self.signals[0] if self.signals else None, retried_since(self.invoices)) if t]
        return min(starts, default=None)

    @property
    def paid_invoices(self) -> tuple[str, ...]:
        return tuple(i.id for i in self.invoices if i.status == "paid")


@dataclass(frozen=True)
class Suspend:
    reason: str


@dataclass(frozen=True)
class Restore:
    reason: str


Action = Suspend | Restore


@dataclass(frozen=True)
class Reading:
    """What one event says: a subscription decision (`suspends`), a past-due status, an invoice fact; or none."""

    reason: str
    suspends: bool | None = None
    past_due: bool = False
    invoice: Invoice | None = None

    @property
    def ignored(self) -> bool:
        return self.suspends is None and not self.past_due and self.invoice is None


def read(event: StripeEventReceived, policy: DunningPolicy = DEFAULT_POLICY) -> Reading:
    """What one Stripe event says about the customer, on its own."""
    if event.type.startswith("invoice."):
        return read_invoice(event)
    if event.type.startswith("customer.subscription."):
        obj, status = event.data_object, event.data_object.get("status")
        suspending = policy.suspend_statuses | ({"paused"} if policy.suspend_paused else set())
        if status in suspending:
            return Reading(f"subscription {obj.get('id')} is {status}", suspends=True)
        if status in policy.good_statuses:
            return Reading(f"subscription {obj.get('id')} is {status}", suspends=False)
        if status in policy.past_due_statuses:
            return Reading(f"subscription {obj.get('id')} is {status}", past_due=True)
        return Reading(f"subscription status {status!r} changes nothing")
    return Reading(f"{event.type} is not a dunning signal")


def read_invoice(event: StripeEventReceived) -> Reading:
    obj, at = event.data_object, event.created
    object_id = str(obj.get("id") or "")
    attempts = obj.get("attempt_count")
    tries = attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0
    if not object_id:
        return Reading(f"{event.type} without an invoice id")
    if event.type == "invoice.payment_failed":
        if obj.get("status") == "paid":
            return Reading("the invoice is already paid")
        if obj.get("next_payment_attempt") is None:
            return Reading(f"payment of invoice {object_id} failed after {attempts} attempt(s); Stripe will not "
                           "retry", invoice=Invoice(object_id, "failed", at, at, tries))
        return Reading(f"payment of invoice {object_id} failed; Stripe will retry",
                       invoice=Invoice(object_id, "retrying", at, at, tries))
    if event.type == "invoice.paid":
        return Reading(f"invoice {object_id} paid", suspends=False, invoice=Invoice(object_id, "paid", at))
    if event.type == "invoice.voided":
        return Reading(f"invoice {object_id} voided", invoice=Invoice(object_id, "voided", at))
    if event.type == "invoice.marked_uncollectible":
        return Reading(f"invoice {object_id} marked uncollectible",
                       invoice=Invoice(object_id, "uncollectible", at, attempts=tries))
    return Reading(f"{event.type} is not a dunning signal")


def decide(
    state: DunningState, event: StripeEventReceived, policy: DunningPolicy = DEFAULT_POLICY
) -> tuple[DunningState, list[Action]]:
    """Apply one Stripe event to a customer's standing; returns the new state and what must happen to the keys."""
    reading = read(event, policy)
    if reading.ignored:
        return state, []
    at, decided = event.created, state.decided_at
    new = replace(state, clock=_later(state.clock, at))
    if reading.invoice is not None:
        new = replace(new, invoices=record(new.invoices, reading.invoice, policy.remembered))
    if reading.past_due and (decided is None or at > decided):  # else the decision after it settled the matter
        new = replace(new, signals=tuple(sorted({*new.signals, at}))[: policy.remembered])
    if reading.suspends is not None and not (
        decided is not None and (at < decided or (at == decided and event.stripe_event_id in state.decided_ids))
    ):
        ids = state.decided_ids | {event.stripe_event_id} if at == decided else frozenset({event.stripe_event_id})
        new = replace(new, decided_at=at, decided_ids=ids, suspends=reading.suspends, decided_reason=reading.reason,
                      signals=tuple(s for s in new.signals if s > at))
    return settle(state, new, policy, reading.reason)


def expire(
    state: DunningState, tick: PastDueGraceExpired, policy: DunningPolicy = DEFAULT_POLICY
) -> tuple[DunningState, list[Action]]:
    """The dunning clock's tick: time has passed up to `tick.deadline`, though Stripe said nothing."""
    if state.clock is not None and tick.deadline <= state.clock:
        return state, []
    return settle(state, replace(state, clock=tick.deadline), policy, None)


def grace_deadline(state: DunningState, policy: DunningPolicy = DEFAULT_POLICY) -> datetime | None:
    """When the open past-due episode runs out of grace, if one is open and keys still work."""
    if state.standing != "past_due" or state.past_due_since is None:
        return None
    return state.past_due_since + policy.past_due_grace


def settle(
    before: DunningState, state: DunningState, policy: DunningPolicy, cause: str | None
) -> tuple[DunningState, list[Action]]:
    """The standing the remembered facts add up to, and the key action if keys start or stop working."""
    since = state.past_due_since
    held = holding(state.invoices, policy.write_off_uncollectible)
    if held is not None:
        standing: Standing = "suspended"
        reason: str | None = held.reason
    elif state.suspends:
        standing, reason = "suspended", state.decided_reason
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
        return after, [Restore(cause or state.decided_reason or "paid")]
    return after, []


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def _days(span: timedelta) -> str:
    return f"{span.days} day(s)" if span.days else f"{int(span.total_seconds())} s"
