"""Account registry facts: who an account is, how it is billed, and who hears about it (its contact address)."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from pydantic import AwareDatetime, EmailStr, Field

from events.envelope import Event, natural_event_id
from events.types import AccountId, BillingModel, StripeCustomerId

# pydantic's EmailStr (email-validator, offline: no DNS lookup): one address, no display name, no quoted forms,
# no CR/LF; the domain comes back lower-cased, the local part as given.
ContactEmail = EmailStr


def contact_of_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Upcast a v1 AccountRegistered, from before contact addresses: none on file."""
    return {**data, "contact_email": None}


class AccountRegistered(Event):
    """`contact_email` (v2) is a new version, not only a new optional field: events forbid unknown fields, so a
    process from before it would refuse a v1-stamped registration carrying it as malformed and dead-letter it; a
    v2 one it holds as not yet readable until it is upgraded (events/codec.py)."""

    event_type: ClassVar[str] = "AccountRegistered"
    version: ClassVar[int] = 2
    topic: ClassVar[str] = "accounts"

    account_id: AccountId
    model: BillingModel
    stripe_customer_id: StripeCustomerId | None = None
    display_name: str | None = None
    # Changed later by AccountContactSet.
    contact_email: ContactEmail | None = Field(
        default=None, description="where the account's alerts are emailed; null: the billing inbox"
    )

    def natural_id(self) -> uuid.UUID:
        # Registering the same account twice is the same fact.
        return natural_event_id("account-registered", self.account_id)


class StripeCustomerLinked(Event):
    event_type: ClassVar[str] = "StripeCustomerLinked"
    topic: ClassVar[str] = "accounts"

    account_id: AccountId
    stripe_customer_id: StripeCustomerId


class AccountContactSet(Event):
    """The address the account's alerts are emailed to from now on (null: none, the billing inbox gets them). A
    fact of its own, not a second registration: a registration's id is the account's, so a re-registration with
    another address would be the same event and change nothing."""

    event_type: ClassVar[str] = "AccountContactSet"
    topic: ClassVar[str] = "accounts"

    account_id: AccountId
    contact_email: ContactEmail | None
    set_at: AwareDatetime
