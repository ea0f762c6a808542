"""API-key facts: keys issued and revoked by operators; accounts held and released by the sources that may stop
them (the dunning policy, the PAYG balance, usage caps).

Only a key's SHA-256 hash and a short visible prefix ever travel; the secret is shown once, to its creator.
Suspension belongs to the account, so a key issued while an account is suspended is suspended too. Each source
holds or releases its own hold, numbered by its own decisions; a key works only while no source holds it.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from events.envelope import Event, natural_event_id
from events.types import AccountId, ApiName

KeyId = Annotated[str, StringConstraints(pattern=r"^key_[A-Za-z0-9]+$", max_length=64)]
KeyHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
HoldSource = Literal["dunning", "payg", "cap"]
HOLD_SOURCES: tuple[HoldSource, ...] = ("dunning", "payg", "cap")


def scope_of_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Upcast a v2 KeySuspended, which named no scope: every hold then stopped every API surface (scope null)."""
    return dict(data)


def source_of_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Upcast a v1 KeySuspended/KeyRestored, which named no source: only dunning and PAYG decided then, and PAYG's
    causes all start with `payg:`, so the source is exact for every event already on the log."""
    cause = str(data.get("cause", ""))
    return {**data, "source": "payg" if cause.startswith("payg:") else "dunning"}


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
    """One source holds every key of the account. `effective_at` is when the cause happened (Stripe's `created`);
    `sequence` numbers this source's decisions for the account, so readers keep the highest per (account, source)
    and a replayed or repeated delivery cannot undo a newer decision of the same source, nor touch another's.
    `scope` (v3) names the API surfaces the hold stops, for a cap on some surfaces only; null stops them all. It is
    a new version, not only a new optional field, so a process from before it refuses it as unreadable (and says
    so) instead of dropping the hold as malformed."""

    event_type: ClassVar[str] = "KeySuspended"
    version: ClassVar[int] = 3
    topic: ClassVar[str] = "keys"

    account_id: AccountId
    source: HoldSource = Field(description="who holds the keys: dunning, payg or cap")
    reason: str = Field(min_length=1, max_length=500)
    cause: str = Field(description="what caused it, e.g. the Stripe event id")
    effective_at: AwareDatetime
    sequence: int = Field(ge=1, description="this source's decision number for the account: the highest wins")
    until: AwareDatetime | None = Field(
        default=None, description="when the hold ends by itself (a cap: its period's end), so callers may retry"
    )
    scope: list[ApiName] | None = Field(
        default=None, min_length=1,
        description="the API surfaces the hold stops (caps on some surfaces only); null: every surface",
    )

    def natural_id(self) -> uuid.UUID:
        # Causes of different sources never collide (Stripe ids, `payg:<n>`, `cap:<...>`), so v1 ids stay valid.
        return natural_event_id("key-suspended", self.account_id, self.cause)


class KeyRestored(Event):
    """The source releases its hold; the keys work again only if no other source holds them."""

    event_type: ClassVar[str] = "KeyRestored"
    version: ClassVar[int] = 2
    topic: ClassVar[str] = "keys"

    account_id: AccountId
    source: HoldSource
    reason: str = Field(min_length=1, max_length=500)
    cause: str
    effective_at: AwareDatetime
    sequence: int = Field(ge=1)

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("key-restored", self.account_id, self.cause)
