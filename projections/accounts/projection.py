"""The account registry's fold. The first registration of an id wins; a later one is the same fact again."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import asyncpg

from events.accounts import AccountContactSet, AccountRegistered, StripeCustomerLinked
from events.envelope import Event
from projections.projection import Projection
from projections.records import Recorded


class AccountRegistry(Projection):
    name = "accounts"
    schema = "accounts"
    topics = ("accounts",)
    migrations = Path(__file__).parent / "migrations"
    tables = ("accounts",)

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        # Registry changes are rare and order matters within an account, so this folds in log order.
        for item in events:
            event = item.event
            if isinstance(event, AccountRegistered):
                await conn.execute(
                    """INSERT INTO accounts (account_id, model, stripe_customer_id, display_name, contact_email,
                                             registered_at, updated_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (account_id) DO NOTHING""",
                    event.account_id, event.model, event.stripe_customer_id, event.display_name,
                    event.contact_email, item.envelope.occurred_at,
                )
            elif isinstance(event, StripeCustomerLinked):
                await conn.execute(
                    "UPDATE accounts SET stripe_customer_id = $2, updated_at = $3 WHERE account_id = $1",
                    event.account_id, event.stripe_customer_id, item.envelope.occurred_at,
                )
            elif isinstance(event, AccountContactSet):
                await conn.execute(
                    "UPDATE accounts SET contact_email = $2, updated_at = $3 WHERE account_id = $1",
                    event.account_id, event.contact_email, item.envelope.occurred_at,
                )
