"""Billing facts: what the meter reporter told Stripe, and what it could not."""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from events.envelope import Event, natural_event_id
from events.types import AccountId, StripeCustomerId


class MeterUsageReported(Event):
    """One customer's jobs of one window reached Stripe as one meter event (identified by `identifier`)."""

    event_type: ClassVar[str] = "MeterUsageReported"
    topic: ClassVar[str] = "billing"

    account_id: AccountId
    stripe_customer_id: StripeCustomerId
    event_name: str
    window_start: AwareDatetime
    window_seconds: int = Field(ge=1)
    seq: int = Field(ge=0, description="0 for the window's first event, n for the n-th batch of late jobs")
    identifier: str
    value: int = Field(ge=0)
    sent_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("meter-usage-reported", self.identifier)


class MeterUsageUnreportable(Event):
    """Usage Stripe will not take as a meter event: it must be billed another way (an invoice item)."""

    event_type: ClassVar[str] = "MeterUsageUnreportable"
    topic: ClassVar[str] = "billing"

    account_id: AccountId
    stripe_customer_id: StripeCustomerId
    window_start: AwareDatetime
    window_seconds: int = Field(ge=1)
    seq: int = Field(ge=0)
    identifier: str
    value: int = Field(ge=0)
    reason: Literal["expired", "rejected"]
    detail: str

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("meter-usage-unreportable", self.identifier)
