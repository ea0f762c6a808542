"""Stripe's own facts, as the webhook bridge verified and received them."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, ClassVar

from pydantic import AwareDatetime, StringConstraints

from events.envelope import Event, natural_event_id
from events.types import AccountId, StripeCustomerId

StripeEventId = Annotated[str, StringConstraints(pattern=r"^evt_[A-Za-z0-9_]+$", max_length=255)]
StripeEventType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.]*$", max_length=128)]


class StripeEventReceived(Event):
    """One Stripe event, once, however often Stripe delivered it; keyed by its customer (per-customer order)."""

    event_type: ClassVar[str] = "StripeEventReceived"
    topic: ClassVar[str] = "stripe"

    stripe_event_id: StripeEventId
    type: StripeEventType
    created: AwareDatetime
    customer_id: StripeCustomerId | None = None
    livemode: bool = False
    data_object: dict[str, Any]  # `data.object` as Stripe sent it
    account_id: AccountId | None = None  # the account the customer bills, when one was linked on receipt

    def natural_id(self) -> uuid.UUID:
        # A redelivery of a Stripe event is the same fact: one event id on our bus.
        return natural_event_id("stripe-event", self.stripe_event_id)

    def partition_key(self) -> str:
        return self.customer_id or self.stripe_event_id


class PastDueGraceExpired(Event):
    """A customer's past-due grace period ran out with no Stripe event to say so: the dunning clock's tick.

    Not Stripe's own fact, but part of the customer's billing timeline, so it travels on the Stripe topic in
    the customer's order. Being in the log makes replays decide exactly as the first run did.
    """

    event_type: ClassVar[str] = "PastDueGraceExpired"
    topic: ClassVar[str] = "stripe"

    customer_id: StripeCustomerId
    past_due_since: AwareDatetime  # the episode it ends; a tick for an older episode changes nothing
    deadline: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("past-due-grace-expired", self.customer_id, self.past_due_since.isoformat())

    def partition_key(self) -> str:
        return self.customer_id
