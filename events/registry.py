"""Every event type the engine knows, in one registry used to decode the log."""

from __future__ import annotations

from events.accounts import AccountRegistered, StripeCustomerLinked
from events.codec import EventRegistry
from events.deadletters import DeadLettered
from events.jobs import JobCompleted, LegacyOperation

REGISTRY = EventRegistry(
    [
        JobCompleted,
        LegacyOperation,
        AccountRegistered,
        StripeCustomerLinked,
        DeadLettered,
    ]
)
