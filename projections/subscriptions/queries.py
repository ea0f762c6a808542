"""An account's billing in its current Stripe period: plan, included jobs, jobs used, overage and its charge."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import asyncpg

from projections.accounts import queries as accounts
from projections.db import Connect, connector
from projections.meter import queries as meter
from projections.subscriptions.state import included_jobs, overage


class NoSuchAccount(LookupError):
    pass


LATEST_SUBSCRIPTION = """
SELECT * FROM subscriptions.subscriptions WHERE customer_id = $1
ORDER BY status NOT IN ('canceled', 'incomplete_expired') DESC, last_event_created DESC LIMIT 1
"""

async def billing_summary(
    db: Connect | asyncpg.Connection, account_id: str, plans: Mapping[str, int], unit_minor: Decimal, currency: str
) -> dict[str, Any] | None:
    """None when the account has no subscription on record; raises NoSuchAccount for an unknown account. The
    account, the subscription and the meter's figures are each read in their own projection's database."""
    connect = connector(db)
    account = await accounts.account(await connect("accounts"), account_id)
    if account is None:
        raise NoSuchAccount(account_id)
    if account["stripe_customer_id"] is None:
        return None
    sub = await (await connect("subscriptions")).fetchrow(LATEST_SUBSCRIPTION, account["stripe_customer_id"])
    if sub is None:
        return None
    start, end = sub["current_period_start"], sub["current_period_end"]
    used = (await meter.recorded_in_period(await connect("meter"), account_id, start, end) if start and end
            else meter.NOTHING_RECORDED)
    included = included_jobs(sub["base_price_id"], sub["status"], plans)
    bill = overage(included, used.recorded, unit_minor, currency)
    return {
        "account_id": account_id,
        "stripe_customer_id": account["stripe_customer_id"],
        "subscription_id": sub["subscription_id"],
        "status": sub["status"],
        "base_price_id": sub["base_price_id"],
        "interval": sub["interval"],
        "period": {"start": start.isoformat() if start else None, "end": end.isoformat() if end else None},
        "included_jobs": bill.included,
        "used_jobs": bill.used,
        "reported_to_stripe": used.sent,
        "overage_jobs": bill.overage,
        "overage_charge": {"amount": bill.charge_minor, "currency": bill.currency},
    }


# What the console shows


async def latest_per_customer(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    """Each customer's most recently changed subscription (status, base_price_id), by customer."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (customer_id) customer_id, status, base_price_id FROM subscriptions.subscriptions
           ORDER BY customer_id, last_event_created DESC"""
    )
    return {r["customer_id"]: r for r in rows}


# What the developer tools read (the demo's scenarios)


async def base_price(conn: asyncpg.Connection, subscription_id: str) -> str | None:
    """The subscription's base price as last folded, None before its first event."""
    found: str | None = await conn.fetchval(
        "SELECT base_price_id FROM subscriptions.subscriptions WHERE subscription_id = $1", subscription_id
    )
    return found
