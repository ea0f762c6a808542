"""What Stripe must hold for billing — the jobs meter and four prices — and how `jobmeter stripe sync` makes it so.

Each item is found by the ID the environment names (then checked, never duplicated), else by its lookup key
(prices) or event name (the meter), else created with an idempotency key derived from the item, so two syncs
racing, or one retried, create it once. The checks are pure functions over what Stripe returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import stripe

from jobmeter.settings import Settings
from projections.subscriptions.state import OVERAGE_MINOR_PER_JOB

CURRENCY = "usd"
PRO_MONTHLY_CENTS = 4_900
PRO_ANNUAL_CENTS = 49_000
# A decimal string: Stripe takes fractions of a cent per unit this way.
OVERAGE_CENTS_PER_JOB = str(OVERAGE_MINOR_PER_JOB)
PAYG_TOPUP_CENTS = 1_000

LOOKUP_KEYS = {
    "pro_monthly": "jobmeter_pro_monthly",
    "pro_annual": "jobmeter_pro_annual",
    "overage": "jobmeter_overage",
    "payg_topup": "jobmeter_payg_topup",
}


@dataclass
class Item:
    name: str
    id: str | None = None
    action: str = "missing"  # checked (from the environment), found (by key), created
    problems: list[str] = field(default_factory=list)


# What Stripe returned (a StripeObject, a dict in tests): read by key, whatever its static type.
Fetched = Any


def _get(obj: Fetched, *path: str) -> Any:
    value: Any = obj
    for key in path:
        if value is None:
            return None
        value = value.get(key) if isinstance(value, Mapping) else getattr(value, key, None)
    return value


def check_meter(meter: Fetched, event_name: str) -> list[str]:
    problems = []
    if _get(meter, "event_name") != event_name:
        problems.append(f"event_name is {_get(meter, 'event_name')!r}, expected {event_name!r}")
    if _get(meter, "default_aggregation", "formula") != "sum":
        problems.append(f"aggregation is {_get(meter, 'default_aggregation', 'formula')!r}, expected 'sum'")
    if _get(meter, "customer_mapping", "type") != "by_id":
        problems.append("customers are not mapped by id")
    if _get(meter, "status") not in (None, "active"):
        problems.append(f"meter is {_get(meter, 'status')}")
    return problems


def check_base_price(price: Fetched, interval: str) -> list[str]:
    problems = []
    if not _get(price, "active"):
        problems.append("price is not active")
    if _get(price, "recurring", "interval") != interval:
        problems.append(f"interval is {_get(price, 'recurring', 'interval')!r}, expected {interval!r}")
    if _get(price, "recurring", "usage_type") not in ("licensed", None):
        problems.append("a base price must be licensed, not metered")
    return problems


def check_overage_price(price: Fetched, meter_id: str | None, included_jobs: int) -> list[str]:
    problems = []
    if not _get(price, "active"):
        problems.append("price is not active")
    if _get(price, "recurring", "usage_type") != "metered":
        problems.append("overage price is not metered")
    if meter_id and _get(price, "recurring", "meter") != meter_id:
        problems.append(f"overage price bills meter {_get(price, 'recurring', 'meter')!r}, expected {meter_id!r}")
    if _get(price, "billing_scheme") != "tiered" or _get(price, "tiers_mode") != "graduated":
        problems.append("overage price is not graduated-tiered")
    else:
        tiers = _get(price, "tiers") or []
        first = tiers[0] if tiers else None
        if first is None or _get(first, "up_to") != included_jobs or (_get(first, "unit_amount") or 0) != 0:
            problems.append(f"first tier is not {included_jobs} included jobs at 0")
    return problems


def check_topup_price(price: Fetched) -> list[str]:
    problems = []
    if not _get(price, "active"):
        problems.append("price is not active")
    if _get(price, "type") != "one_time":
        problems.append("a top-up price must be one-time")
    return problems


def price_params(settings: Settings, meter_id: str | None) -> dict[str, dict[str, Any]]:
    """What each price is created with (lookup keys make them findable by the next sync)."""
    pro = {"name": "jobmeter Pro"}
    return {
        "pro_monthly": {"currency": CURRENCY, "unit_amount": PRO_MONTHLY_CENTS, "product_data": pro,
                        "recurring": {"interval": "month", "usage_type": "licensed"}},
        "pro_annual": {"currency": CURRENCY, "unit_amount": PRO_ANNUAL_CENTS, "product_data": pro,
                       "recurring": {"interval": "year", "usage_type": "licensed"}},
        "overage": {
            "currency": CURRENCY, "product_data": {"name": "jobmeter jobs beyond the plan"},
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter_id},
            "billing_scheme": "tiered", "tiers_mode": "graduated",
            "tiers": [{"up_to": settings.jobmeter_plan_included_jobs, "unit_amount": 0},
                      {"up_to": "inf", "unit_amount_decimal": OVERAGE_CENTS_PER_JOB}],
        },
        "payg_topup": {"currency": CURRENCY, "unit_amount": PAYG_TOPUP_CENTS,
                       "product_data": {"name": "jobmeter job credits"}},
    }


def _sync_meter(client: stripe.StripeClient, settings: Settings) -> Item:
    item = Item("meter")
    name = settings.stripe_meter_event_name
    if settings.stripe_meter_id:
        meter = client.v1.billing.meters.retrieve(settings.stripe_meter_id)
        item.id, item.action, item.problems = meter.id, "checked", check_meter(meter, name)
        return item
    found = [m for m in client.v1.billing.meters.list({"status": "active"}).auto_paging_iter() if m.event_name == name]
    if found:
        item.id, item.action, item.problems = found[0].id, "found", check_meter(found[0], name)
        return item
    meter = client.v1.billing.meters.create(
        {"display_name": "jobmeter jobs", "event_name": name, "default_aggregation": {"formula": "sum"},
         "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
         "value_settings": {"event_payload_key": "value"}},
        {"idempotency_key": f"jobmeter-catalog-meter-{name}"},
    )
    item.id, item.action = meter.id, "created"
    return item


def _sync_price(client: stripe.StripeClient, key: str, env_id: str | None, params: dict[str, Any],
                check: Any) -> Item:
    item = Item(key)
    if env_id:
        price = client.v1.prices.retrieve(env_id, {"expand": ["tiers"]})
        item.id, item.action, item.problems = price.id, "checked", check(price)
        return item
    lookup = LOOKUP_KEYS[key]
    found = [p for p in client.v1.prices.list({"lookup_keys": [lookup], "expand": ["data.tiers"]}).data
             if p.lookup_key == lookup]
    if found:
        item.id, item.action, item.problems = found[0].id, "found", check(found[0])
        return item
    create: Any = {**params, "lookup_key": lookup}
    price = client.v1.prices.create(create, {"idempotency_key": f"jobmeter-catalog-{lookup}"})
    item.id, item.action = price.id, "created"
    return item


def sync_catalog(client: stripe.StripeClient, settings: Settings) -> list[Item]:
    """Make sure the meter and the prices exist and look right; returns each with its ID and any problems."""
    meter = _sync_meter(client, settings)
    params = price_params(settings, meter.id)
    included = settings.jobmeter_plan_included_jobs
    prices = [
        _sync_price(client, "pro_monthly", settings.stripe_pro_price_id, params["pro_monthly"],
                    lambda p: check_base_price(p, "month")),
        _sync_price(client, "pro_annual", settings.stripe_pro_annual_price_id, params["pro_annual"],
                    lambda p: check_base_price(p, "year")),
        _sync_price(client, "overage", settings.stripe_metered_overage_price_id, params["overage"],
                    lambda p: check_overage_price(p, meter.id, included)),
        _sync_price(client, "payg_topup", settings.stripe_payg_topup_price_id, params["payg_topup"],
                    check_topup_price),
    ]
    return [meter, *prices]


ENV_NAMES = {
    "meter": "STRIPE_METER_ID",
    "pro_monthly": "STRIPE_PRO_PRICE_ID",
    "pro_annual": "STRIPE_PRO_ANNUAL_PRICE_ID",
    "overage": "STRIPE_METERED_OVERAGE_PRICE_ID",
    "payg_topup": "STRIPE_PAYG_TOPUP_PRICE_ID",
}
