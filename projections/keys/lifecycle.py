"""The key lifecycle: Stripe events through the dunning policy, into key events and notifications.

What it decides leaves through its outbox (KeySuspended / KeyRestored on the `keys` topic) and its
notifications table, both written in the transaction that moves its positions: a change is published and
told to the customer once, and never without the state change that caused it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from events.envelope import Event, natural_event_id
from events.keys import KeyRestored, KeySuspended
from events.stripe import PastDueGraceExpired, StripeEventReceived
from projections.keys.dunning import (
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

SAVE_CUSTOMER = """
INSERT INTO customers (customer_id, account_id, standing, reason, past_due_since, decided_at, decided_ids, suspends,
                       decided_reason, signals, clock, paid_invoices, decisions, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (customer_id) DO UPDATE SET
    account_id = EXCLUDED.account_id, standing = EXCLUDED.standing, reason = EXCLUDED.reason,
    past_due_since = EXCLUDED.past_due_since, decided_at = EXCLUDED.decided_at, decided_ids = EXCLUDED.decided_ids,
    suspends = EXCLUDED.suspends, decided_reason = EXCLUDED.decided_reason, signals = EXCLUDED.signals,
    clock = EXCLUDED.clock, paid_invoices = EXCLUDED.paid_invoices, decisions = EXCLUDED.decisions,
    updated_at = EXCLUDED.updated_at
"""

@dataclass(frozen=True)
class Cause:
    """What a decision rests on: an id for the record and the notification, and when it happened."""

    id: str
    at: datetime
    recipient: str | None = None


def state_of(row: asyncpg.Record | None) -> DunningState:
    if row is None:
        return DunningState()
    return DunningState(
        standing=row["standing"], reason=row["reason"], decided_at=row["decided_at"],
        decided_ids=frozenset(row["decided_ids"]), suspends=row["suspends"], decided_reason=row["decided_reason"],
        signals=tuple(row["signals"]), clock=row["clock"], paid_invoices=tuple(row["paid_invoices"]),
    )


def save_args(customer_id: str, account: str | None, state: DunningState, decisions: int, at: datetime) -> list[Any]:
    return [
        customer_id, account, state.standing, state.reason, state.past_due_since, state.decided_at,
        sorted(state.decided_ids), state.suspends, state.decided_reason, list(state.signals), state.clock,
        list(state.paid_invoices), decisions, at,
    ]


class KeyLifecycle(Projection):
    name = "key-lifecycle"
    not_swappable = (
        "its `notifications` table is which customers were emailed; a rebuild has them all unsent, so "
        "every suspension and restoration notice would be emailed again"
    )
    schema = "key_lifecycle"
    topics = ("stripe",)
    migrations = Path(__file__).parent / "lifecycle_migrations"
    tables = ("customers",)  # notifications and the outbox carry send times, not comparable across replays
    emits = True

    def __init__(self, policy: DunningPolicy = DEFAULT_POLICY) -> None:
        self.policy = policy

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        for item in events:
            event = item.event
            if isinstance(event, StripeEventReceived) and event.customer_id is not None:
                cause = Cause(event.stripe_event_id, event.created, recipient_of(event.data_object))
                await self.apply_one(conn, event.customer_id, event.account_id, cause, event)
            elif isinstance(event, PastDueGraceExpired):
                cause = Cause(f"grace:{event.past_due_since.isoformat()}", event.deadline)
                await self.apply_one(conn, event.customer_id, None, cause, event)

    async def apply_one(
        self, conn: asyncpg.Connection, customer_id: str, account_id: str | None, cause: Cause,
        event: StripeEventReceived | PastDueGraceExpired,
    ) -> None:
        row = await conn.fetchrow("SELECT * FROM customers WHERE customer_id = $1 FOR UPDATE", customer_id)
        before = state_of(row)
        if isinstance(event, StripeEventReceived):
            after, actions = decide(before, event, self.policy)
        else:
            after, actions = expire(before, event, self.policy)
        account = account_id or (row["account_id"] if row else None) or await conn.fetchval(
            "SELECT account_id FROM accounts.accounts WHERE stripe_customer_id = $1", customer_id
        )
        decisions = (row["decisions"] if row else 0) + len(actions)
        if after != before or row is None or account != row["account_id"]:
            await conn.execute(SAVE_CUSTOMER, *save_args(customer_id, account, after, decisions, cause.at))
        if actions and account is None:
            log.warning("dunning decision for a customer with no account; no keys to change",
                        customer_id=customer_id, cause=cause.id)
            return
        for action in actions:
            assert account is not None
            await self.record(conn, account, customer_id, cause, action, decisions)

    async def record(
        self, conn: asyncpg.Connection, account: str, customer_id: str, cause: Cause, action: Action, sequence: int
    ) -> None:
        """The key event to the outbox and the notification beside it; both once per cause."""
        kind = "suspended" if isinstance(action, Suspend) else "restored"
        model = KeySuspended if isinstance(action, Suspend) else KeyRestored
        key_event = model(account_id=account, reason=action.reason, cause=cause.id, effective_at=cause.at,
                          sequence=sequence)
        await emit(conn, [key_event], producer=PRODUCER, occurred_at=cause.at)
        await conn.execute(
            """INSERT INTO notifications (notification_id, account_id, customer_id, kind, reason, recipient)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (notification_id) DO NOTHING""",
            natural_event_id("key-notice", account, kind, cause.id), account, customer_id, kind, action.reason,
            cause.recipient,
        )
        log.info("keys " + kind, account_id=account, customer_id=customer_id, reason=action.reason, cause=cause.id)


def recipient_of(obj: dict[str, Any]) -> str | None:
    email = obj.get("customer_email")
    return email if isinstance(email, str) and "@" in email else None
