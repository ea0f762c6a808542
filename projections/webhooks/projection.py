"""The outgoing webhooks' fold: endpoints from the accounts topic, and one delivery row per (event, endpoint) for
every event that maps to a webhook type (`types.py`), written in the transaction that moves the positions — the
outbox `services.webhooks.sender` works through. A delivery's id is derived from the event's id and the endpoint's,
so a refold, a restart or the same event published twice records nothing new.

An event and the endpoint that should receive it come on different topics; whichever is folded second makes the
delivery (the events are kept for that), and an advisory lock per account keeps two folds of one account in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from events.accounts import AccountContactSet, AccountRegistered
from events.envelope import Event
from events.webhooks import WebhookEndpointAdded, WebhookEndpointRemoved
from projections.db import lock_each
from projections.projection import Projection
from projections.records import Recorded
from projections.webhooks import store
from projections.webhooks.queries import SCHEMA
from projections.webhooks.types import Happened, data_of, deliveries, mailed, source_topics, webhook_type


class WebhookOutbox(Projection):
    name = "webhooks"
    schema = SCHEMA  # `webhooks` is the Stripe webhook log's
    topics = tuple(sorted({"accounts", *source_topics()}))
    migrations = Path(__file__).parent / "migrations"
    tables = ("endpoints", "events", "contacts")
    not_swappable = (
        "its `deliveries` table is what was sent to customers' endpoints; a rebuild has every delivery unsent, so "
        "swapping it in would POST the whole history again"
    )

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        happened: list[Happened] = []
        changed: list[WebhookEndpointAdded | WebhookEndpointRemoved] = []
        contacts: list[tuple[str, str | None, datetime, bool]] = []  # (account, address, when, a registration)
        for item in events:
            event = item.event
            if isinstance(event, WebhookEndpointAdded | WebhookEndpointRemoved):
                changed.append(event)
            elif isinstance(event, AccountContactSet) or (isinstance(event, AccountRegistered) and event.contact_email):
                contacts.append((event.account_id, event.contact_email, item.envelope.occurred_at,
                                 isinstance(event, AccountRegistered)))
            elif (kind := webhook_type(event)) is not None:
                account = getattr(event, "account_id", None)
                if isinstance(account, str):
                    happened.append(Happened(item.envelope.event_id, account, kind.name, item.envelope.occurred_at,
                                             data_of(event, kind)))
        if not happened and not changed and not contacts:
            return
        await lock_each(conn, "webhooks:account:", [h.account_id for h in happened] + [c.account_id for c in changed]
                        + [c[0] for c in contacts])
        for account, address, at, registration in contacts:  # in log order: the latest address set wins
            await store.set_contact(conn, account, address, at, only_if_new=registration)
        for change in changed:  # in log order: per account, the topic keeps an addition before its removal
            if isinstance(change, WebhookEndpointAdded):
                await store.add_endpoint(conn, change)
            else:
                await store.remove_endpoint(conn, change.endpoint_id, change.removed_at)
        await store.keep_events(conn, happened)
        # The alerts' emails, in the same transaction: one per alert event, whoever folds it and however often.
        await store.add_alert_mails(conn, [h for h in happened if mailed(h.kind, h.data)])
        accounts = sorted({h.account_id for h in happened} | {c.account_id for c in changed})
        endpoints = await store.endpoints_of(conn, accounts)
        added = {c.endpoint_id for c in changed if isinstance(c, WebhookEndpointAdded)}
        # This batch's events to every endpoint, and every kept event to the endpoints this batch added.
        late = await store.events_for(conn, [e for e in endpoints if e.endpoint_id in added])
        pairs = deliveries(happened, endpoints) + deliveries(late, [e for e in endpoints if e.endpoint_id in added])
        unique = list({d.delivery_id: d for d in pairs}.values())
        await store.add_deliveries(conn, unique, datetime.now(UTC))
