"""A Stripe subscription object read into what billing needs, and the arithmetic of included jobs and overage.

Pure: no I/O. Since API 2025-03-31 the billing period sits on each subscription item, not on the subscription;
both shapes are read. The base item is the first whose price is not metered (the Pro plan); the metered overage
item rides along unchanged through plan changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

ENDED = frozenset({"canceled", "incomplete_expired"})
# The metered overage price per job past a plan's included jobs, in minor units (fractions of a cent): the one
# figure `jobmeter stripe sync` gives Stripe (services/stripe_adapter/catalog.py) and spend caps price by.
OVERAGE_MINOR_PER_JOB = Decimal("0.5")


@dataclass(frozen=True)
class SubscriptionSnapshot:
    subscription_id: str
    customer_id: str
    status: str
    price_ids: tuple[str, ...]
    base_item_id: str | None
    base_price_id: str | None
    interval: str | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool


def _time(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if isinstance(value, int | float) else None


def _id(value: Any) -> str | None:
    """Stripe sends either an ID or the expanded object."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def snapshot(obj: Mapping[str, Any], *, deleted: bool = False) -> SubscriptionSnapshot:
    """Read a `subscription` object (from `customer.subscription.*` events); raises ValueError if it is not one."""
    subscription_id, customer_id = _id(obj.get("id")), _id(obj.get("customer"))
    if obj.get("object") != "subscription" or not subscription_id or not customer_id:
        raise ValueError("not a Stripe subscription object (needs object=subscription, id and customer)")
    items = [i for i in (obj.get("items") or {}).get("data") or [] if isinstance(i, Mapping)]
    prices: list[Mapping[str, Any]] = [
        i["price"] if isinstance(i.get("price"), Mapping) else {"id": i.get("price")} for i in items
    ]
    base = next(
        ((item, price) for item, price in zip(items, prices, strict=True)
         if (price.get("recurring") or {}).get("usage_type") != "metered"),
        (None, None),
    )
    base_item, base_price = base
    period_from: Mapping[str, Any] = obj if obj.get("current_period_start") is not None else (base_item or {})
    return SubscriptionSnapshot(
        subscription_id=subscription_id,
        customer_id=customer_id,
        status="canceled" if deleted else str(obj.get("status") or "unknown"),
        price_ids=tuple(p for p in (_id(price) for price in prices) if p),
        base_item_id=_id(base_item.get("id")) if base_item else None,
        base_price_id=_id(base_price) if base_price else None,
        interval=((base_price or {}).get("recurring") or {}).get("interval"),
        current_period_start=_time(period_from.get("current_period_start")),
        current_period_end=_time(period_from.get("current_period_end")),
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
    )


def plan_allowances(monthly_price: str | None, annual_price: str | None, included: int) -> dict[str, int]:
    """Base price -> jobs included per billing period (an annual period includes twelve months' worth)."""
    found: dict[str, int] = {}
    if monthly_price:
        found[monthly_price] = included
    if annual_price:
        found[annual_price] = included * 12
    return found


def included_jobs(base_price_id: str | None, status: str, plans: Mapping[str, int]) -> int:
    """Jobs the period includes: the plan's allowance for a live subscription on a known plan, else none."""
    if status in ENDED or base_price_id is None:
        return 0
    return plans.get(base_price_id, 0)


@dataclass(frozen=True)
class Overage:
    included: int
    used: int
    overage: int
    charge_minor: int  # what the overage costs at the metered price, in minor units (cents)
    currency: str


def overage(included: int, used: int, unit_minor: Decimal, currency: str) -> Overage:
    """Jobs past the allowance and their charge; the graduated price's first tier (up to `included`) costs 0."""
    over = max(0, used - included)
    charge = (Decimal(over) * unit_minor).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return Overage(included, used, over, int(charge), currency)
