"""Every event type the engine knows, in one registry used to decode the log."""

from __future__ import annotations

from events.accounts import AccountContactSet, AccountRegistered, StripeCustomerLinked, contact_of_v1
from events.billing import MeterUsageReported, MeterUsageUnreportable
from events.caps import CapCleared, CapPeriodEnded, CapSet
from events.codec import EventRegistry
from events.deadletters import DeadLettered, DeadLetterRedriven, fact_of_v1
from events.jobs import JobCompleted, JobsCompleted, LegacyOperation
from events.keys import KeyIssued, KeyRestored, KeyRevoked, KeySuspended, scope_of_v2, source_of_v1
from events.payg import (
    AutoRechargeDisabled,
    BalanceCredited,
    BalanceDebited,
    BalanceLow,
    BalanceReversed,
    PaygCardSaved,
    PaygConfigured,
    RechargeCanceled,
    RechargeConfirmed,
    RechargeFailed,
    RechargeRequested,
    RechargeSucceeded,
    jobs_of_v1,
)
from events.rapidapi import (
    BillingUnitsDeclared,
    MarketplacePlanChanged,
    MarketplaceUserLinked,
    RapidApiUsageReported,
    ReconciliationDiscrepancy,
)
from events.stripe import PastDueGraceExpired, StripeEventReceived
from events.usage import UsageCapReached, UsageForecastExceeded, UsageThresholdCrossed, spend_of_v1
from events.webhooks import WebhookEndpointAdded, WebhookEndpointRemoved

REGISTRY = EventRegistry(
    [
        JobCompleted,
        JobsCompleted,
        LegacyOperation,
        AccountRegistered,
        StripeCustomerLinked,
        DeadLettered,
        DeadLetterRedriven,
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
        RechargeCanceled,
        BalanceReversed,
        BalanceLow,
        WebhookEndpointAdded,
        WebhookEndpointRemoved,
        CapSet,
        CapCleared,
        CapPeriodEnded,
        UsageThresholdCrossed,
        UsageCapReached,
        AccountContactSet,
        UsageForecastExceeded,
    ]
)

for _held in (KeySuspended, KeyRestored):
    REGISTRY.upcaster(_held.event_type, 1)(source_of_v1)
REGISTRY.upcaster(KeySuspended.event_type, 2)(scope_of_v2)
REGISTRY.upcaster(AccountRegistered.event_type, 1)(contact_of_v1)
REGISTRY.upcaster(UsageForecastExceeded.event_type, 1)(spend_of_v1)
REGISTRY.upcaster(BalanceDebited.event_type, 1)(jobs_of_v1)
REGISTRY.upcaster(DeadLettered.event_type, 1)(fact_of_v1)
