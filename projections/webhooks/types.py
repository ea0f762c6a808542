"""Which events become which webhook types, and what of each a customer receives: one line per event type.

Pure. A delivery's `data` is the event's fields named here, as they travel on the bus (JSON), so adding a type is
adding its line; the fold reads the topics of every event named here.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events.envelope import Event, natural_event_id
from events.keys import KeyRestored, KeySuspended
from events.payg import BalanceLow, BalanceReversed, RechargeFailed, RechargeRequested, RechargeSucceeded
from events.usage import UsageCapReached, UsageForecastExceeded, UsageThresholdCrossed


@dataclass(frozen=True)
class WebhookType:
    name: str  # what customers subscribe to and receive as `type`
    fields: tuple[str, ...]  # the event's fields sent as `data`


# BalanceLow is every PAYG balance's "below its threshold", once per crossing (`projections.payg.rules.balance_low`);
# RechargeRequested only comes for those with auto-recharge and a saved card.
WEBHOOK_TYPES: dict[type[Event], WebhookType] = {
    KeySuspended: WebhookType("keys.suspended", ("source", "reason", "effective_at", "until")),
    KeyRestored: WebhookType("keys.restored", ("source", "reason", "effective_at")),
    BalanceLow: WebhookType("balance.low", ("balance_minor", "threshold_minor", "currency", "low_at")),
    RechargeRequested: WebhookType("recharge.requested", ("recharge_id", "amount_minor", "currency", "requested_at")),
    RechargeSucceeded: WebhookType("balance.recharged", ("recharge_id", "payment_intent_id", "amount_minor")),
    RechargeFailed: WebhookType("recharge.failed", ("recharge_id", "code", "message", "failed_at")),
    BalanceReversed: WebhookType("balance.reversed", (
        "reason", "amount_minor", "currency", "payment_intent_id", "charge_id", "dispute_id", "reversed_at")),
    UsageThresholdCrossed: WebhookType("usage.threshold_crossed", (
        "period_start", "period_end", "limit_kind", "api", "threshold_percent", "limit", "used", "crossed_at")),
    UsageCapReached: WebhookType("usage.cap_reached", (
        "period_start", "period_end", "limit_kind", "api", "hard", "limit", "used", "reached_at")),
    UsageForecastExceeded: WebhookType("usage.forecast_exceeded", (
        "period_start", "period_end", "limit_kind", "api", "limit", "jobs_to_date", "forecast_jobs", "forecast_high",
        "reached_on", "forecast_at", "spend_to_date", "forecast_spend", "currency")),
}

# The types that are also emailed to the account's contact: the alerts.
ALERT_TYPES = frozenset({"usage.threshold_crossed", "usage.cap_reached", "balance.low", "usage.forecast_exceeded"})


def known_types() -> tuple[str, ...]:
    return tuple(sorted({t.name for t in WEBHOOK_TYPES.values()}))


def source_topics() -> tuple[str, ...]:
    """The logical topics holding the events above."""
    return tuple(sorted({cls.topic for cls in WEBHOOK_TYPES}))


def mailed(kind: str, data: dict[str, Any]) -> bool:
    """Whether an event of this type is an alert emailed to the account. A cap's 100 % threshold is not: the same
    crossing is `usage.cap_reached`, mailed once for both (the included jobs have no "reached" of their own)."""
    if kind == "usage.threshold_crossed" and data.get("limit_kind") in ("cap", "spend_cap"):
        return data.get("threshold_percent") != 100
    return kind in ALERT_TYPES


def webhook_type(event: Event) -> WebhookType | None:
    return WEBHOOK_TYPES.get(type(event))


def delivery_id(source_event_id: uuid.UUID, endpoint_id: str) -> uuid.UUID:
    """The one id of this event's delivery to this endpoint, whoever folds it and however often."""
    return natural_event_id("webhook-delivery", str(source_event_id), endpoint_id)


def data_of(event: Event, kind: WebhookType) -> dict[str, Any]:
    """The event's fields a customer receives, as they travel on the bus."""
    return event.model_dump(mode="json", include=set(kind.fields))


def body(delivery: uuid.UUID, kind: str, created: datetime, account_id: str, data: dict[str, Any]) -> str:
    """The exact bytes every attempt of a delivery POSTs (as text): fixed at fold time, so a retry is identical."""
    return json.dumps({"id": str(delivery), "type": kind, "created": int(created.timestamp()),
                       "account_id": account_id, "data": data}, separators=(",", ":"))


@dataclass(frozen=True)
class Endpoint:
    endpoint_id: str
    account_id: str
    event_types: tuple[str, ...]  # empty: every type
    added_at: datetime
    removed_at: datetime | None

    def wants(self, kind: str, at: datetime) -> bool:
        """Whether something of type `kind` that happened at `at` goes to this endpoint: it was added by then, not
        removed yet, and takes that type. Decided by times on the log, never by the order the fold reads two topics
        in, so a replay sends to exactly the endpoints the first run did."""
        live = self.added_at <= at and (self.removed_at is None or at < self.removed_at)
        return live and (not self.event_types or kind in self.event_types)


@dataclass(frozen=True)
class Happened:
    """An event that maps to a webhook type, as the fold keeps it."""

    event_id: uuid.UUID
    account_id: str
    kind: str
    occurred_at: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class Delivery:
    delivery_id: uuid.UUID
    event_id: uuid.UUID
    endpoint_id: str
    account_id: str
    kind: str
    body: str
    cancelled: bool  # its endpoint is already removed: recorded, never sent


def deliveries(happened: list[Happened], endpoints: list[Endpoint]) -> list[Delivery]:
    """Every (event, endpoint) pair that must be delivered, whichever of the two the fold saw first."""
    out = []
    for h in happened:
        for e in endpoints:
            if e.account_id == h.account_id and e.wants(h.kind, h.occurred_at):
                d = delivery_id(h.event_id, e.endpoint_id)
                out.append(Delivery(d, h.event_id, e.endpoint_id, h.account_id, h.kind,
                                    body(d, h.kind, h.occurred_at, h.account_id, h.data), e.removed_at is not None))
    return out
