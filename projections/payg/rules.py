"""The pay-as-you-go rules: prices, when to recharge, what a failed recharge does, when keys stop. Pure, no I/O.

Time is always passed in (the log time of the batch being folded), so a replay decides exactly as the first run.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Literal, Protocol, TypeVar

Prices = dict[str, int]


class PriceError(ValueError):
    """A price list that cannot be read, or a job on an API surface that has no price."""


def parse_prices(text: str) -> Prices:
    """`"extract=5,classify=3"` → `{"extract": 5, "classify": 3}`: integer minor units per job, per API surface."""
    prices: Prices = {}
    for part in text.split(","):
        if not part.strip():
            continue
        api, sep, amount = part.partition("=")
        api, amount = api.strip(), amount.strip()
        if not sep or not api or not amount.isdigit():
            raise PriceError(f"bad price {part.strip()!r}: expected api=minor_units, e.g. extract=5")
        if api in prices:
            raise PriceError(f"API surface {api!r} is priced twice")
        prices[api] = int(amount)
    if not prices:
        raise PriceError("no PAYG prices configured")
    return prices


def price_of(prices: Prices, api: str) -> int:
    try:
        return prices[api]
    except KeyError:
        raise PriceError(f"no PAYG price for API surface {api!r}; priced: {', '.join(sorted(prices))}") from None


@dataclass(frozen=True)
class PaygPolicy:
    """Everything the rules are tuned by, from the settings, in one place."""

    allowance_minor: int = 0  # how far below zero a balance may go before the account's keys stop
    max_failures: int = 3  # consecutive failed recharges before auto-recharge turns itself off
    backoff: timedelta = timedelta(minutes=5)  # after the first failure; doubles with each one after
    backoff_max: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class RechargeState:
    """What the recharge decision looks at, for one account."""

    balance_minor: int
    threshold_minor: int
    recharge_minor: int
    auto_recharge: bool
    has_card: bool  # a customer and a saved payment method to charge off-session
    in_flight: bool  # a recharge requested and not yet settled
    failures: int = 0
    backoff_until: datetime | None = None


RechargeVerdict = Literal[
    "recharge", "above_threshold", "auto_off", "no_card", "in_flight", "backing_off", "nothing_to_charge"
]


def recharge_verdict(state: RechargeState, now: datetime) -> RechargeVerdict:
    """Whether to request one recharge now, or why not. Never a second while one is in flight."""
    if state.balance_minor >= state.threshold_minor:
        return "above_threshold"
    if not state.auto_recharge:
        return "auto_off"
    if not state.has_card:
        return "no_card"
    if state.in_flight:
        return "in_flight"
    if state.backoff_until is not None and now < state.backoff_until:
        return "backing_off"
    if state.recharge_minor <= 0:
        return "nothing_to_charge"
    return "recharge"


def should_recharge(state: RechargeState, now: datetime) -> bool:
    return recharge_verdict(state, now) == "recharge"


@dataclass(frozen=True)
class LowBalance:
    low: bool  # the flag kept per balance: below its threshold as the rules last saw it
    alert: bool  # it has just gone below: raise one BalanceLow


def balance_low(balance_minor: int, threshold_minor: int, was_low: bool) -> LowBalance:
    """Once per crossing: an alert when the balance is below its threshold and was not (at or above it) when the
    rules last looked, whatever lowered it (jobs, a refund, a raised threshold); none while it stays below, re-armed
    only once it is back at or above. Threshold 0 is none configured: never an alert, the flag left as it was.
    Seen once per batch, so a dip and a recovery within one batch are no crossing (as for recharges)."""
    if threshold_minor <= 0:
        return LowBalance(was_low, alert=False)
    low = balance_minor < threshold_minor
    return LowBalance(low, alert=low and not was_low)


@dataclass(frozen=True)
class AfterFailure:
    failures: int
    backoff_until: datetime
    disable_auto: bool


def after_failure(failures_before: int, failed_at: datetime, policy: PaygPolicy) -> AfterFailure:
    """A recharge was declined (or needs the customer present): back off, and give up after `max_failures`."""
    failures = failures_before + 1
    wait = min(policy.backoff * (2 ** (failures - 1)), policy.backoff_max)
    return AfterFailure(failures, failed_at + wait, disable_auto=failures >= policy.max_failures)


KeyAction = Literal["suspend", "restore"]


def key_action(balance_minor: int, suspended: bool, policy: PaygPolicy) -> KeyAction | None:
    """Suspend once the balance is below −allowance; restore once credit brings it back to −allowance or above."""
    exhausted = balance_minor < -policy.allowance_minor
    if exhausted and not suspended:
        return "suspend"
    if not exhausted and suspended:
        return "restore"
    return None


# What the customer is told when a recharge fails, by Stripe's error code.
FAILURE_MESSAGES: dict[str, str] = {
    "authentication_required": "your bank asks you to confirm this payment yourself",
    "card_declined": "your card was declined",
    "expired_card": "your card has expired",
    "insufficient_funds": "your card has insufficient funds",
}


def failure_message(code: str | None) -> str:
    return FAILURE_MESSAGES.get(code or "", "the automatic payment did not go through")


def should_capture_card(payment_intent_id: str | None, has_card: bool) -> bool:
    """A completed top-up saves its card for off-session use: capture it when the account has none on file
    (a card set by an operator, or saved before, stays). Without the PaymentIntent there is nothing to look up."""
    return payment_intent_id is not None and not has_card


def auto_recharge_once_card_saved(auto_recharge: bool, configured: bool) -> bool:
    """The customer consented to off-session charges when the top-up saved the card: that turns auto-recharge on
    for an account nobody configured; an explicit configuration (on or off) stands."""
    return auto_recharge or not configured


IntentSettlement = Literal["succeeded", "failed"]

# A PaymentIntent's status, as Stripe reports it, for an off-session recharge already confirmed.
INTENT_SETTLEMENTS: dict[str, IntentSettlement] = {
    "succeeded": "succeeded",
    "requires_payment_method": "failed",  # declined: the card must be replaced
    "canceled": "failed",
}


def intent_settlement(status: str | None) -> IntentSettlement | None:
    """What a recharge's PaymentIntent says about the recharge; None while it is still undecided
    (processing, requires_action, …): ask again later."""
    return INTENT_SETTLEMENTS.get(status or "")


@dataclass(frozen=True)
class Reversal:
    """Money a refund or a dispute moves back: a movement of the account its payment credited."""

    movement_id: str  # the identity of the cause, so a redelivery moves nothing
    kind: Literal["refund", "dispute"]
    amount_minor: int  # signed: negative takes back, positive gives back
    reference: str  # the charge refunded, or the dispute


def refund_reversal(charge_id: str, refunded_minor: int, credited_minor: int,
                    already_minor: int) -> Reversal | None:
    """Debit what the charge's refunds so far (Stripe's cumulative `amount_refunded`, at most what was credited)
    add to what its refunds debited already: a duplicate, or an older and smaller total arriving late, adds
    nothing."""
    due = min(refunded_minor, credited_minor) - already_minor
    if due <= 0:
        return None
    return Reversal(f"refund:{charge_id}:{refunded_minor}", "refund", -due, charge_id)


def dispute_reversals(dispute_id: str, amount_minor: int, status: str, closed: bool, credited_minor: int,
                      debited_minor: int | None) -> list[Reversal]:
    """A dispute takes its amount (at most what was credited) once, whichever of its events comes first; won, it
    gives back what it took; lost, the debit stands. An inquiry (`warning_*`) withdraws no funds: nothing.
    `debited_minor` is what an earlier event of this dispute took, if any."""
    if status.startswith("warning_"):
        return []
    taken = debited_minor if debited_minor is not None else min(amount_minor, credited_minor)
    moves = [Reversal(f"dispute:{dispute_id}", "dispute", -taken, dispute_id)]
    if closed and status == "won":
        moves.append(Reversal(f"dispute-won:{dispute_id}", "dispute", taken, dispute_id))
    return moves


class Reversing(Protocol):
    """A refund or a dispute as the parking rules see it."""

    @property
    def key(self) -> str: ...  # the fact's identity: parked once, however often it is delivered

    @property
    def payment_intent_id(self) -> str: ...


R = TypeVar("R", bound=Reversing)


@dataclass(frozen=True)
class ReversalPlan(Generic[R]):
    apply: list[R]  # their payment credited a balance: move it back now, in this order
    park: list[R]  # the batch's whose payment credited nothing (yet): wait for it
    released: list[str]  # keys of the parked ones applied now: no longer waiting


def plan_reversals(parked: Sequence[R], arrived: Sequence[R], credited: Collection[str]) -> ReversalPlan[R]:
    """What to do with refunds and disputes: those of a payment that credited a balance are applied, the parked
    ones first (they were folded before), then the batch's, each in the order folded, so however the log is cut
    into batches the same movements are recorded (a charge's refunds are cumulative totals: which total comes first
    decides how the debit is split). The batch's others wait for their payment's credit; a parked one whose
    payment still credited nothing stays as it is."""
    ready = [p for p in parked if p.payment_intent_id in credited]
    return ReversalPlan(
        apply=ready + [a for a in arrived if a.payment_intent_id in credited],
        park=[a for a in arrived if a.payment_intent_id not in credited],
        released=[p.key for p in ready],
    )
