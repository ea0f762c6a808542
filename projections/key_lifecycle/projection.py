"""The key lifecycle: Stripe events through the dunning policy, into key events and notifications.

What it decides leaves through its outbox (KeySuspended / KeyRestored on the `keys` topic) and its
notifications table, both written in the transaction that moves its positions: a change is published and
told to the customer once, and never without the state change that caused it.

Which account a Stripe customer bills comes from the lifecycle's own view of the registry (folded from the
accounts topic, `projections.account_view`), never from the registry's tables. The two topics are read in no
fixed order, so a customer may be decided on before its account is known: its row keeps no account, and the
account's link, when it arrives, sets it, and suspends the account's keys if the customer is suspended by then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from events.envelope import Event, natural_event_id
from events.keys import KeyRestored, KeySuspended
from events.stripe import PastDueGraceExpired, StripeEventReceived
from jobmeter.settings import Settings
from projections.account_view import ACCOUNT_EVENTS, AccountEvent, fold_accounts
from projections.key_lifecycle import store
from projections.key_lifecycle.dunning import (
    DEFAULT_POLICY,
    Action,
    DunningPolicy,
    DunningState,
    Suspend,
    decide,
    expire,
)
from projections.outbox import emit
from projections.projection import Projection
from projections.records import Recorded

log = structlog.get_logger(__name__)

PRODUCER = "jobmeter-key-lifecycle"

@dataclass(frozen=True)
class Cause:
    """What a decision rests on: an id for the record and the notification, and when it happened."""

    id: str
    at: datetime
    recipient: str | None = None


class KeyLifecycle(Projection):
    name = "key-lifecycle"
    not_swappable = (
        "its `notifications` table is which customers were emailed; a rebuild has them all unsent, so "
        "every suspension and restoration notice would be emailed again"
    )
    schema = "key_lifecycle"
    topics = ("accounts", "stripe")
    migrations = Path(__file__).parent / "migrations"
    tables = ("customers", "accounts")  # notifications and the outbox carry send times, not comparable across replays
    emits = True

    def __init__(self, policy: DunningPolicy = DEFAULT_POLICY) -> None:
        self.policy = policy

    def configured(self, settings: Settings) -> KeyLifecycle:
        return KeyLifecycle(replace(
            self.policy, suspend_paused=settings.jobmeter_dunning_suspend_paused,
            write_off_uncollectible=settings.jobmeter_dunning_write_off_uncollectible,
        ))

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        await store.lock_customers(conn, [c for item in events if (c := customer_in(item.event)) is not None])
        for item in events:
            event = item.event
            if isinstance(event, ACCOUNT_EVENTS):
                await fold_accounts(conn, [event])
                await self.link(conn, event, item.envelope.occurred_at)
            elif isinstance(event, StripeEventReceived) and event.customer_id is not None:
                cause = Cause(event.stripe_event_id, event.created, recipient_of(event.data_object))
                await self.apply_one(conn, event.customer_id, event.account_id, cause, event)
            elif isinstance(event, PastDueGraceExpired):
                cause = Cause(f"grace:{event.past_due_since.isoformat()}", event.deadline)
                await self.apply_one(conn, event.customer_id, None, cause, event)

    async def apply_one(
        self, conn: asyncpg.Connection, customer_id: str, account_id: str | None, cause: Cause,
        event: StripeEventReceived | PastDueGraceExpired,
    ) -> None:
        row = await store.customer(conn, customer_id)
        before = row.state if row is not None else DunningState()
        if isinstance(event, StripeEventReceived):
            after, actions = decide(before, event, self.policy)
        else:
            after, actions = expire(before, event, self.policy)
        account = account_id or (row.account_id if row else None) or await store.account_of_customer(
            conn, customer_id
        )
        decisions = (row.decisions if row else 0) + len(actions)
        if after != before or row is None or account != row.account_id:
            await store.save_customer(conn, customer_id, account, after, decisions, cause.at)
        if actions and account is None:
            log.warning("dunning decision for a customer with no account yet; its keys change when it is linked",
                        customer_id=customer_id, cause=cause.id)
            return
        for action in actions:
            assert account is not None
            await self.record(conn, account, customer_id, cause, action, decisions)

    async def link(self, conn: asyncpg.Connection, event: AccountEvent, at: datetime) -> None:
        """The account's customer, decided on before the link arrived, now bills it: if that customer is
        suspended, so are the account's keys (the decision number is the customer's, as for any decision)."""
        if event.stripe_customer_id is None:
            return
        row = await store.attach_account(conn, event.account_id, event.stripe_customer_id)
        if row is None or row.state.standing != "suspended":
            return
        cause = Cause(f"linked:{event.stripe_customer_id}", at)
        action = Suspend(row.state.reason or "payment failed")
        await self.record(conn, event.account_id, event.stripe_customer_id, cause, action, row.decisions)

    async def record(
        self, conn: asyncpg.Connection, account: str, customer_id: str, cause: Cause, action: Action, sequence: int
    ) -> None:
        """The key event to the outbox and the notification beside it; both once per cause."""
        kind = "suspended" if isinstance(action, Suspend) else "restored"
        model = KeySuspended if isinstance(action, Suspend) else KeyRestored
        key_event = model(account_id=account, source="dunning", reason=action.reason, cause=cause.id,
                          effective_at=cause.at, sequence=sequence)
        await emit(conn, [key_event], producer=PRODUCER, occurred_at=cause.at)
        await store.add_notification(
            conn, natural_event_id("key-notice", account, kind, cause.id), account, customer_id, kind,
            action.reason, cause.recipient,
        )
        log.info("keys " + kind, account_id=account, customer_id=customer_id, reason=action.reason, cause=cause.id)


def customer_in(event: Event) -> str | None:
    """The Stripe customer whose row the fold may touch for this event, if any."""
    if isinstance(event, ACCOUNT_EVENTS):
        return event.stripe_customer_id
    if isinstance(event, StripeEventReceived | PastDueGraceExpired):
        return event.customer_id
    return None


def recipient_of(obj: dict[str, Any]) -> str | None:
    email = obj.get("customer_email")
    return email if isinstance(email, str) and "@" in email else None
