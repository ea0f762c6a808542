"""Every event type the engine knows, in one registry used to decode the log."""

from __future__ import annotations

from events.accounts import AccountRegistered, StripeCustomerLinked
from events.billing import MeterUsageReported, MeterUsageUnreportable
from events.codec import EventRegistry
from events.deadletters import DeadLettered
from events.jobs import JobCompleted, LegacyOperation
from events.keys import KeyIssued, KeyRestored, KeyRevoked, KeySuspended
from events.stripe import StripeEventReceived

REGISTRY = EventRegistry(
    [
        JobCompleted,
        LegacyOperation,
        AccountRegistered,
        StripeCustomerLinked,
        DeadLettered,
        MeterUsageReported,
        MeterUsageUnreportable,
        StripeEventReceived,
        KeyIssued,
        KeyRevoked,
        KeySuspended,
        KeyRestored,
    ]
)
