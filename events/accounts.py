"""Account registry facts: who an account is and how it is billed."""

from __future__ import annotations

import uuid
from typing import ClassVar

from events.envelope import Event, natural_event_id
from events.types import AccountId, BillingModel, StripeCustomerId


class AccountRegistered(Event):
    event_type: ClassVar[str] = "AccountRegistered"
    topic: ClassVar[str] = "accounts"

    account_id: AccountId
    model: BillingModel
    stripe_customer_id: StripeCustomerId | None = None
    display_name: str | None = None

    def natural_id(self) -> uuid.UUID:
        # Registering the same account twice is the same fact.
        return natural_event_id("account-registered", self.account_id)


class StripeCustomerLinked(Event):
    event_type: ClassVar[str] = "StripeCustomerLinked"
    topic: ClassVar[str] = "accounts"

    account_id: AccountId
    stripe_customer_id: StripeCustomerId
