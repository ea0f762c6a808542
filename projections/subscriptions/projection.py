"""The subscriptions fold: each Stripe subscription's plan, status and period, from the Stripe events on the bus.

Only `customer.subscription.*` events matter here; a row moves only to a newer event (Stripe's `created`, then the
event id), so redeliveries and out-of-order deliveries leave the newest state standing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import asyncpg

from events.envelope import Event
from events.stripe import StripeEventReceived
from projections.projection import Projection
from projections.records import Recorded
from projections.subscriptions.state import snapshot

SUBSCRIPTION_EVENTS = frozenset({
    "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
    "customer.subscription.paused", "customer.subscription.resumed", "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired", "customer.subscription.trial_will_end",
})

UPSERT = """
INSERT INTO subscriptions (subscription_id, customer_id, status, price_ids, base_item_id, base_price_id, interval,
                           current_period_start, current_period_end, cancel_at_period_end, last_event_created,
                           last_event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (subscription_id) DO UPDATE SET
    customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, price_ids = EXCLUDED.price_ids,
    base_item_id = EXCLUDED.base_item_id, base_price_id = EXCLUDED.base_price_id, interval = EXCLUDED.interval,
    current_period_start = EXCLUDED.current_period_start, current_period_end = EXCLUDED.current_period_end,
    cancel_at_period_end = EXCLUDED.cancel_at_period_end, last_event_created = EXCLUDED.last_event_created,
    last_event_id = EXCLUDED.last_event_id
WHERE (subscriptions.last_event_created, subscriptions.last_event_id)
    < (EXCLUDED.last_event_created, EXCLUDED.last_event_id)
"""


class Subscriptions(Projection):
    name = "subscriptions"
    schema = "subscriptions"
    topics = ("stripe",)
    migrations = Path(__file__).parent / "migrations"
    tables = ("subscriptions",)

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        for item in events:
            event = item.event
            if not isinstance(event, StripeEventReceived) or event.type not in SUBSCRIPTION_EVENTS:
                continue
            # ValueError (not a subscription object) is a data error: the Folder dead-letters this record alone.
            s = snapshot(event.data_object, deleted=event.type == "customer.subscription.deleted")
            await conn.execute(
                UPSERT, s.subscription_id, s.customer_id, s.status, list(s.price_ids), s.base_item_id,
                s.base_price_id, s.interval, s.current_period_start, s.current_period_end, s.cancel_at_period_end,
                event.created, event.stripe_event_id,
            )
