"""The account registry's commands and reads. Accounts are facts on the bus, folded by the accounts consumer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from events.accounts import AccountContactSet, AccountRegistered
from events.codec import describe
from projections.accounts import queries
from services.platform.resources import Resources
from services.platform.rows import plain


class AccountError(ValueError):
    """A registration that cannot be made as asked (invalid input)."""


class AccountConflict(AccountError):
    """The account id, or the Stripe customer, already belongs to an account."""


async def get_account(res: Resources, account_id: str) -> dict[str, Any] | None:
    async with res.pool_for("accounts").acquire() as conn:
        row = await queries.account(conn, account_id)
    return plain(row) if row else None


async def list_accounts(res: Resources, model: str | None = None) -> list[dict[str, Any]]:
    async with res.pool_for("accounts").acquire() as conn:
        rows = await queries.accounts(conn, model)
    return [plain(r) for r in rows]


async def register_account(
    res: Resources,
    account_id: str,
    model: str,
    *,
    stripe_customer_id: str | None = None,
    display_name: str | None = None,
    contact_email: str | None = None,
    wait_seconds: float = 5.0,
) -> dict[str, Any] | None:
    """Publish the registration and wait for the registry to show it; None if it is not folded in time."""
    try:
        event = AccountRegistered(
            account_id=account_id, model=model, stripe_customer_id=stripe_customer_id, display_name=display_name,
            contact_email=contact_email,
        )
    except ValidationError as error:
        raise AccountError(describe(error)) from None
    existing = await get_account(res, account_id)
    if existing is not None:
        raise AccountConflict(f"account {account_id!r} already exists (model {existing['model']})")
    if stripe_customer_id is not None:
        # The registry keeps one account per customer: a second would be refused by the fold, after the 202.
        async with res.pool_for("accounts").acquire() as conn:
            owner = await queries.account_of_customer(conn, stripe_customer_id)
        if owner is not None:
            raise AccountConflict(f"Stripe customer {stripe_customer_id!r} already belongs to account {owner!r}")
    await res.publisher.publish(event)
    return await _wait_for(res, account_id, lambda account: True, wait_seconds)


class UnknownAccount(AccountError):
    """No such account in the registry."""


async def set_contact(
    res: Resources, account_id: str, contact_email: str | None, *, wait_seconds: float = 5.0
) -> dict[str, Any] | None:
    """Publish the account's new alert address (None: none on file) and wait for the registry to show it; None if
    it is not folded in time."""
    try:
        event = AccountContactSet(account_id=account_id, contact_email=contact_email, set_at=datetime.now(UTC))
    except ValidationError as error:
        raise AccountError(describe(error)) from None
    if await get_account(res, account_id) is None:
        raise UnknownAccount(f"no account {account_id!r}")
    await res.publisher.publish(event)
    return await _wait_for(res, account_id, lambda account: account["contact_email"] == event.contact_email,
                           wait_seconds)


async def _wait_for(
    res: Resources, account_id: str, shown: Callable[[dict[str, Any]], bool], wait_seconds: float
) -> dict[str, Any] | None:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        account = await get_account(res, account_id)
        if account is not None and shown(account):
            return account
        await asyncio.sleep(0.05)
    return None

