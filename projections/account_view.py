"""A projection's own view of the account registry, folded from the accounts topic beside its other topics.

A projection that bills an account by its model must not read the registry's tables: the registry is another
consumer and may not yet have applied an account whose jobs are already here. It folds the account events itself
into an `accounts (account_id, model, customer_id)` table of its schema, and holds (parks) what it cannot decide
until the account's event arrives, in whichever order the two topics are read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import asyncpg

from events.accounts import AccountRegistered, StripeCustomerLinked
from events.envelope import Event
from projections.db import lock_each

AccountEvent = AccountRegistered | StripeCustomerLinked
ACCOUNT_EVENTS = (AccountRegistered, StripeCustomerLinked)


class AccountView(NamedTuple):
    model: str
    customer_id: str | None


class Elsewhere(set[str]):
    """The accounts a projection has learnt are billed by another model than its own, so none of their jobs is
    its to apply: a record of their jobs is passed over unread (`Projection.billed_elsewhere`). Once learnt, for
    good: an account's first registration stands (`fold_accounts`), so its model never changes. Learnt from the
    projection's own view inside its fold, where a registration folded in a transaction that is then rolled back
    is folded again, first, by the retry: the same model."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model

    def learn(self, views: Mapping[str, AccountView]) -> None:
        self.update(account for account, view in views.items() if view.model != self.model)


async def lock_accounts(conn: asyncpg.Connection, scope: str, account_ids: Sequence[str]) -> None:
    """Jobs and account events of one account may be folded by two consumers at once (they come from different
    topics); holding this lock makes "park a job" and "release the account's parked jobs" happen one after the
    other, never both missing each other."""
    await lock_each(conn, f"{scope}:account:", account_ids)


async def fold_accounts(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
    """Mirror the registry's rules: the first registration wins; a link sets the customer of a known account."""
    for event in events:
        if isinstance(event, AccountRegistered):
            await conn.execute(
                "INSERT INTO accounts (account_id, model, customer_id) VALUES ($1, $2, $3) "
                "ON CONFLICT (account_id) DO NOTHING",
                event.account_id, event.model, event.stripe_customer_id,
            )
        elif isinstance(event, StripeCustomerLinked):
            await conn.execute(
                "UPDATE accounts SET customer_id = $2 WHERE account_id = $1", event.account_id,
                event.stripe_customer_id,
            )


async def accounts_of(conn: asyncpg.Connection, account_ids: Sequence[str]) -> dict[str, AccountView]:
    rows = await conn.fetch("SELECT account_id, model, customer_id FROM accounts WHERE account_id = ANY($1)",
                            list(account_ids))
    return {r["account_id"]: AccountView(r["model"], r["customer_id"]) for r in rows}
