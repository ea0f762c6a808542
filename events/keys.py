"""API-key facts: keys issued and revoked by operators, accounts suspended and restored by the dunning policy.

Only a key's SHA-256 hash and a short visible prefix ever travel; the secret is shown once, to its creator.
Suspension belongs to the account, so a key issued while an account is suspended is suspended too.
"""

from __future__ import annotations

import uuid
from typing import Annotated, ClassVar

from pydantic import AwareDatetime, Field, StringConstraints

from events.envelope import Event, natural_event_id
from events.types import AccountId

KeyId = Annotated[str, StringConstraints(pattern=r"^key_[A-Za-z0-9]+$", max_length=64)]
KeyHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class KeyIssued(Event):
    event_type: ClassVar[str] = "KeyIssued"
    topic: ClassVar[str] = "keys"

    account_id: AccountId
    key_id: KeyId
    prefix: str = Field(min_length=1, max_length=32, description="the visible start of the secret")
    key_hash: KeyHash = Field(description="sha256 of the secret, hex")
    issued_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("key-issued", self.key_id)


class KeyRevoked(Event):
    event_type: ClassVar[str] = "KeyRevoked"
    topic: ClassVar[str] = "keys"

    account_id: AccountId
    key_id: KeyId
    reason: str = Field(min_length=1, max_length=500)
    revoked_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        # Revocation is final: revoking twice is the same fact.
        return natural_event_id("key-revoked", self.key_id)


class KeySuspended(Event):
    """Every key of the account stops working. `effective_at` is when the cause happened (Stripe's `created`);
    readers keep the highest `sequence`, so a replayed or repeated delivery cannot undo a newer decision."""

    event_type: ClassVar[str] = "KeySuspended"
    topic: ClassVar[str] = "keys"

    account_id: AccountId
    reason: str = Field(min_length=1, max_length=500)
    cause: str = Field(description="what caused it, e.g. the Stripe event id")
    effective_at: AwareDatetime
    sequence: int = Field(ge=1, description="the account's decision number: readers keep the highest")

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("key-suspended", self.account_id, self.cause)


class KeyRestored(Event):
    event_type: ClassVar[str] = "KeyRestored"
    topic: ClassVar[str] = "keys"

    account_id: AccountId
    reason: str = Field(min_length=1, max_length=500)
    cause: str
    effective_at: AwareDatetime
    sequence: int = Field(ge=1)

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("key-restored", self.account_id, self.cause)
