"""What a batch of records means for PAYG: jobs to debit, registrations, configurations, top-ups, settlements,
failures, cancellations, saved cards, refunds and disputes, each in log order. Pure: sorting only, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from events.envelope import Envelope, Event
from events.jobs import JobCompleted, job_fact_hex
from events.payg import PaygCardSaved, PaygConfigured, RechargeCanceled, RechargeConfirmed, RechargeFailed
from events.registry import REGISTRY
from events.stripe import StripeEventReceived
from projections.account_view import ACCOUNT_EVENTS, AccountEvent
from projections.payg.store import Charge
from projections.payg.stripe_events import (
    Dispute,
    RechargeSettled,
    Refund,
    TopUp,
    confirmed_settlement,
    dispute_of,
    recharge_settled,
    refund_of,
    topup_of,
)
from projections.records import Recorded


@dataclass
class Batch:
    """A batch sorted by what it means for PAYG; `at` is its latest log time, the rules' "now"."""

    at: datetime
    jobs: list[Charge] = field(default_factory=list)
    registrations: list[AccountEvent] = field(default_factory=list)
    configs: list[PaygConfigured] = field(default_factory=list)
    topups: list[tuple[TopUp, Envelope]] = field(default_factory=list)
    settlements: list[RechargeSettled] = field(default_factory=list)
    failures: list[RechargeFailed] = field(default_factory=list)
    cancels: list[RechargeCanceled] = field(default_factory=list)
    cards: list[PaygCardSaved] = field(default_factory=list)
    refunds: list[tuple[Refund, Envelope]] = field(default_factory=list)
    disputes: list[tuple[Dispute, Envelope]] = field(default_factory=list)
    dispute_charges: dict[str, str] = field(default_factory=dict)  # the charge each dispute is about

    @classmethod
    def of(cls, events: Sequence[Recorded[Event]]) -> Batch:
        batch = cls(max(i.logged_at for i in events))
        for item in events:
            batch._add(item.event, item.envelope)
        return batch

    def _add(self, event: Event, envelope: Envelope) -> None:
        if isinstance(event, JobCompleted):
            if event.channel == "direct":  # RapidAPI bills its own traffic
                self.jobs.append(Charge(event.account_id, event.api, event.job_id, event.completed_at,
                                        job_fact_hex(envelope, event)))
        elif isinstance(event, ACCOUNT_EVENTS):
            self.registrations.append(event)
        elif isinstance(event, PaygConfigured):
            self.configs.append(event)
        elif isinstance(event, RechargeFailed):
            self.failures.append(event)
        elif isinstance(event, RechargeCanceled):
            self.cancels.append(event)
        elif isinstance(event, RechargeConfirmed):  # the reconciler found the success the webhook did not bring
            self.settlements.append(confirmed_settlement(event))
        elif isinstance(event, PaygCardSaved):
            self.cards.append(event)
        elif isinstance(event, StripeEventReceived):
            self._add_stripe(event, envelope)

    def _add_stripe(self, event: StripeEventReceived, envelope: Envelope) -> None:
        topup = topup_of(event)
        if topup is not None:
            self.topups.append((topup, envelope))
            return
        settled = recharge_settled(event)
        if settled is not None:
            self.settlements.append(settled)
            return
        refund = refund_of(event)
        if refund is not None:
            self.refunds.append((refund, envelope))
            return
        dispute = dispute_of(event)
        if dispute is not None:
            self.disputes.append((dispute, envelope))
            charge = event.data_object.get("charge")
            if isinstance(charge, str) and charge:
                self.dispute_charges[dispute.dispute_id] = charge

    def accounts(self) -> set[str]:
        return (
            {j.account_id for j in self.jobs} | {c.account_id for c in self.configs}
            | {r.account_id for r in self.registrations}
            | {t.account_id for t, _ in self.topups} | {f.account_id for f in self.failures}
            | {c.account_id for c in self.cancels}
            | {c.account_id for c in self.cards}
        )

    def reversed_intents(self) -> set[str]:
        """The PaymentIntents whose money the batch's refunds and disputes move back."""
        return {r.payment_intent_id for r, _ in self.refunds} | {d.payment_intent_id for d, _ in self.disputes}

    def credited_intents(self) -> set[str]:
        """The PaymentIntents of the batch's top-ups and recharge settlements: what may credit a balance."""
        return ({t.payment_intent_id for t, _ in self.topups if t.payment_intent_id}
                | {s.payment_intent_id for s in self.settlements})


def parked_reversal(envelope_json: str) -> Batch:
    """A parked refund or dispute as it was logged, sorted as it was then: a batch of that one record."""
    envelope, event = REGISTRY.decode(envelope_json.encode())
    batch = Batch(envelope.occurred_at)
    if isinstance(event, StripeEventReceived):
        batch._add_stripe(event, envelope)
    if not batch.refunds and not batch.disputes:
        raise RuntimeError(f"parked reversal {envelope.event_id} no longer reads as a refund or a dispute")
    return batch


def parked_topup(envelope_json: str) -> tuple[TopUp, Envelope]:
    """A parked top-up as it was logged: it was one when parked, so it still reads as one."""
    envelope, event = REGISTRY.decode(envelope_json.encode())
    topup = topup_of(event) if isinstance(event, StripeEventReceived) else None
    if topup is None:
        raise RuntimeError(f"parked top-up {envelope.event_id} no longer reads as a top-up")
    return topup, envelope
