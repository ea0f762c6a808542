"""What other areas' mail workers ask the account registry about the accounts they write to: how each is billed
(the currency its spend caps count in) and its contact address (`AccountRegistered` v2, `AccountContactSet`, as
the accounts fold keeps them). Read on the registry's own database, several accounts at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from projections.accounts import queries
from projections.db import has_table
from services.platform.resources import Resources


@dataclass(frozen=True)
class Profile:
    model: str
    contact_email: str | None


Profiles = Callable[[Sequence[str]], Awaitable[dict[str, Profile]]]


def profiles_of(res: Resources) -> Profiles:
    """A lookup of accounts' profiles; an account the registry does not know (yet) is absent from its answer."""

    async def lookup(account_ids: Sequence[str]) -> dict[str, Profile]:
        if not account_ids:
            return {}
        async with res.pool_for("accounts").acquire() as conn:
            if not await has_table(conn, "accounts.accounts"):
                return {}  # a process without the registry's fold yet: nobody known
            rows = await queries.profiles(conn, sorted(set(account_ids)))
        return {r["account_id"]: Profile(r["model"], r["contact_email"]) for r in rows}

    return lookup


def recipient(named: str | None, contact: str | None, inbox: str) -> str:
    """Who a customer's notice goes to: the address its cause names (a Stripe invoice's), else the account's
    contact, else the billing inbox, so a person can pass it on."""
    return named or contact or inbox


async def contacts_of(profiles: Profiles | None, account_ids: Sequence[str]) -> dict[str, str | None]:
    """The contact address of each of these accounts the registry knows; none without a lookup."""
    if profiles is None or not account_ids:
        return {}
    return {account: p.contact_email for account, p in (await profiles(account_ids)).items()}
