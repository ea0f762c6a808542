"""Pay-as-you-go facts: an account's recharge settings, every movement of its balance, and its recharges.

Amounts are integer minor units of `currency`. Each movement has the identity of what caused it (a job, a
Stripe Checkout Session or PaymentIntent), so however often the cause is seen, the balance moves once.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from events.envelope import Event, natural_event_id
from events.types import AccountId, ApiName, JobId, StripeCustomerId

Currency = Annotated[str, StringConstraints(pattern=r"^[a-z]{3}$")]
PaymentMethodId = Annotated[str, StringConstraints(pattern=r"^pm_[A-Za-z0-9_]+$", max_length=255)]
PaymentIntentId = Annotated[str, StringConstraints(pattern=r"^pi_[A-Za-z0-9_]+$", max_length=255)]
RechargeId = Annotated[str, StringConstraints(pattern=r"^rch_[0-9a-f]{32}$")]
MinorUnits = Annotated[int, Field(ge=0, le=10**12)]


def recharge_id(account_id: str, seq: int) -> str:
    """The id of an account's `seq`-th recharge: the `metadata.recharge_id` of its PaymentIntent, and the stem of
    its attempt-scoped idempotency keys (`recharge_attempt_key`)."""
    return f"rch_{natural_event_id('payg-recharge', account_id, str(seq)).hex}"


def recharge_attempt_key(recharge_id: str, attempt: int) -> str:
    """The idempotency key of one attempt at a recharge. Stripe saves a 500 under its key and replays it to every
    retry with that key for 24 hours, so each attempt has its own; the recharger looks for the PaymentIntent an
    earlier attempt may have made (by `metadata.recharge_id`) before it makes another."""
    return f"{recharge_id}:{attempt}"


class PaygConfigured(Event):
    """An operator (or the customer) set how an account recharges; the latest one wins."""

    event_type: ClassVar[str] = "PaygConfigured"
    topic: ClassVar[str] = "payg"

    account_id: AccountId
    threshold_minor: MinorUnits
    recharge_minor: MinorUnits
    auto_recharge: bool
    customer_id: StripeCustomerId | None = None
    payment_method_id: PaymentMethodId | None = None
    configured_at: AwareDatetime


MAX_DEBITED_JOBS = 1000  # per BalanceDebited: ~60 bytes a job keeps a record far below Kafka's 1 MB default


class DebitedJob(BaseModel):
    """One job in a BalanceDebited: what it cost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api: ApiName
    job_id: JobId
    amount_minor: MinorUnits


def jobs_of_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Upcast a v1 BalanceDebited (one event per job) to the v2 shape: a debit of one job."""
    job = {"api": data["api"], "job_id": data["job_id"], "amount_minor": data["amount_minor"]}
    return {"account_id": data["account_id"], "amount_minor": data["amount_minor"], "currency": data["currency"],
            "jobs": [job]}


class BalanceDebited(Event):
    """Jobs' prices taken from one balance: each job debited once however often it was published, and found in
    exactly one BalanceDebited. v1 was an event per job; since v2 an event holds the jobs of one account that one
    fold's batch debited (up to MAX_DEBITED_JOBS), so a busy balance costs the log an event per batch, not per job
    (a fifth of the PAYG consumer's time went to its per-job events, issue 18)."""

    event_type: ClassVar[str] = "BalanceDebited"
    version: ClassVar[int] = 2
    topic: ClassVar[str] = "payg"

    account_id: AccountId
    amount_minor: MinorUnits = Field(description="the jobs' prices added up")
    currency: Currency
    jobs: list[DebitedJob] = Field(min_length=1, max_length=MAX_DEBITED_JOBS)

    @model_validator(mode="after")
    def _adds_up(self) -> BalanceDebited:
        if self.amount_minor != sum(job.amount_minor for job in self.jobs):
            raise ValueError("amount_minor is not the sum of the jobs' amounts")
        return self

    def natural_id(self) -> uuid.UUID:
        # The jobs identify the debit: the same batch folded again (after a crash) gives the same id.
        return natural_event_id("payg-debits", *(f"{job.api}:{job.job_id}" for job in self.jobs))


class BalanceCredited(Event):
    """Money added to the balance: a top-up (a Checkout Session) or a recharge (a PaymentIntent)."""

    event_type: ClassVar[str] = "BalanceCredited"
    topic: ClassVar[str] = "payg"

    account_id: AccountId
    amount_minor: MinorUnits
    currency: Currency
    source: Literal["topup", "recharge"]
    reference: str = Field(min_length=1, max_length=255, description="the Checkout Session or PaymentIntent id")

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("payg-credit", self.reference)


class BalanceReversed(Event):
    """Money a refund or a dispute of a top-up or a recharge moved: a refund or a dispute takes it back, a dispute
    won gives back what the dispute took. One per movement, whatever the order and the duplicates of Stripe's
    events (a refund folded before the credit it reverses waits for it, then moves the balance once)."""

    event_type: ClassVar[str] = "BalanceReversed"
    topic: ClassVar[str] = "payg"

    account_id: AccountId
    amount_minor: MinorUnits = Field(description="what moved: taken back, or given back for dispute_won")
    currency: Currency
    reason: Literal["refund", "dispute", "dispute_won"]
    payment_intent_id: PaymentIntentId = Field(description="the top-up's or recharge's payment reversed")
    charge_id: str | None = Field(default=None, max_length=255, description="the charge refunded or disputed")
    dispute_id: str | None = Field(default=None, max_length=255)
    movement_id: str = Field(min_length=1, max_length=255, description="the movement's identity: refund:<charge>:"
                             "<cumulative refunded>, dispute:<dispute>, dispute-won:<dispute>")
    reversed_at: AwareDatetime = Field(description="when the refund or dispute event was logged")

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("payg-reversal", self.movement_id)


class BalanceLow(Event):
    """The balance went below its threshold (from at or above it, by movements or by a raised threshold): once per
    crossing, for every PAYG account, whether or not it recharges itself. The next one comes only after the balance
    was back at or above its threshold (a top-up, a recharge). `crossing` counts the account's crossings, so each
    has its own natural id however often the batch that decided it is folded."""

    event_type: ClassVar[str] = "BalanceLow"
    topic: ClassVar[str] = "payg"

    account_id: AccountId
    balance_minor: int = Field(ge=-(10**12), le=10**12, description="the balance after the crossing (may be < 0)")
    threshold_minor: MinorUnits
    currency: Currency
    crossing: int = Field(ge=1, description="the account's crossings below its threshold so far, this one included")
    low_at: AwareDatetime = Field(description="the log time of the batch that crossed")

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("payg-balance-low", self.account_id, str(self.crossing))


class RechargeRequested(Event):
    """The balance fell below the threshold: charge the saved card off-session, once."""

    event_type: ClassVar[str] = "RechargeRequested"
    topic: ClassVar[str] = "payg"

    account_id: AccountId
    recharge_id: RechargeId
    seq: int = Field(ge=1)
    amount_minor: MinorUnits
    currency: Currency
    customer_id: StripeCustomerId
    payment_method_id: PaymentMethodId
    requested_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("payg-recharge-requested", self.account_id, str(self.seq))


class RechargeSucceeded(Event):
    event_type: ClassVar[str] = "RechargeSucceeded"
    topic: ClassVar[str] = "payg"

    account_id: AccountId
    recharge_id: RechargeId
    payment_intent_id: PaymentIntentId
    amount_minor: MinorUnits

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("payg-recharge-succeeded", self.recharge_id)


class RechargeFailed(Event):
    """The card was declined or needs the customer present; one per recharge, whoever noticed it first."""

    event_type: ClassVar[str] = "RechargeFailed"
    topic: ClassVar[str] = "payg"

    account_id: AccountId
    recharge_id: RechargeId
    code: str | None = Field(default=None, max_length=100, description="Stripe's error code, e.g. card_declined")
    message: str = Field(default="", max_length=1000)
    payment_intent_id: PaymentIntentId | None = None
    failed_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("payg-recharge-failed", self.recharge_id)


class RechargeCanceled(Event):
    """A recharge ended without charging the card: no longer needed (the balance is at or above its threshold
    now), or requested from history too old to charge and never sent to Stripe. No failure is counted and nobody
    is told; the fold decides afresh whether the account needs a recharge."""

    event_type: ClassVar[str] = "RechargeCanceled"
    topic: ClassVar[str] = "payg"

    account_id: AccountId
    recharge_id: RechargeId
    reason: Literal["not_needed", "stale"]
    detail: str = Field(default="", max_length=1000)
    canceled_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("payg-recharge-canceled", self.recharge_id)


class AutoRechargeDisabled(Event):
    """Too many recharges failed in a row: no more off-session charges until the account is configured again."""

    event_type: ClassVar[str] = "AutoRechargeDisabled"
    topic: ClassVar[str] = "payg"

    account_id: AccountId
    failures: int = Field(ge=1)
    cause: str = Field(description="the recharge whose failure turned it off")

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("payg-auto-off", self.account_id, self.cause)



class PaygCardSaved(Event):
    """The card a top-up Checkout saved for off-session use (the PaymentIntent's payment method) is on file now."""

    event_type: ClassVar[str] = "PaygCardSaved"
    topic: ClassVar[str] = "payg"

    account_id: AccountId
    payment_method_id: PaymentMethodId
    customer_id: StripeCustomerId | None = None
    payment_intent_id: PaymentIntentId = Field(description="the top-up's PaymentIntent that saved the card")
    saved_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("payg-card-saved", self.payment_intent_id)


class RechargeConfirmed(Event):
    """Stripe, asked directly because its webhook did not come in time, says the recharge's PaymentIntent
    succeeded. Credits as the webhook would, once per PaymentIntent, whichever of the two comes first."""

    event_type: ClassVar[str] = "RechargeConfirmed"
    topic: ClassVar[str] = "payg"

    account_id: AccountId
    recharge_id: RechargeId
    payment_intent_id: PaymentIntentId
    amount_minor: MinorUnits
    currency: Currency
    confirmed_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("payg-recharge-confirmed", self.payment_intent_id)
