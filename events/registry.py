"""Every event type the engine knows, in one registry used to decode the log."""

from __future__ import annotations

from events.accounts import AccountRegistered, StripeCustomerLinked
from events.billing import MeterUsageReported, MeterUsageUnreportable
from events.codec import EventRegistry
from events.deadletters import DeadLettered
from events.jobs import JobCompleted, LegacyOperation
from events.keys import KeyIssued, KeyRestored, KeyRevoked, KeySuspended
from events.payg import (
    AutoRechargeDisabled,
    BalanceCredited,
    BalanceDebited,
    PaygCardSaved,
    PaygConfigured,
    RechargeConfirmed,
    RechargeFailed,
    RechargeRequested,
    RechargeSucceeded,
)
from events.rapidapi import (
    BillingUnitsDeclared,
    MarketplacePlanChanged,
    MarketplaceUserLinked,
    RapidApiUsageReported,
    ReconciliationDiscrepancy,
)
from events.stripe import PastDueGraceExpired, StripeEventReceived

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
        PastDueGraceExpired,
        KeyIssued,
        KeyRevoked,
        KeySuspended,
        KeyRestored,
        MarketplaceUserLinked,
        MarketplacePlanChanged,
        BillingUnitsDeclared,
        RapidApiUsageReported,
        ReconciliationDiscrepancy,
        PaygConfigured,
        BalanceDebited,
        BalanceCredited,
        RechargeRequested,
        RechargeSucceeded,
        RechargeFailed,
        AutoRechargeDisabled,
        PaygCardSaved,
        RechargeConfirmed,
    ]
)
