"""Subscriptions without Stripe: reading subscription objects, included jobs, overage charges, plan-change params."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from jobmeter.settings import Settings
from projections.subscriptions.state import included_jobs, overage, snapshot
from services.subscriptions.plans import (
    SubscriptionError,
    change_items,
    change_key,
    checkout_params,
    payment_link,
    plans,
)

T0, T1 = 1_764_547_200, 1_767_225_600  # 2025-12-01, 2026-01-01 UTC

BASE_ITEM = {"id": "si_base", "price": {"id": "price_pro_m", "recurring": {"interval": "month",
                                                                          "usage_type": "licensed"}},
             "current_period_start": T0, "current_period_end": T1}
METERED_ITEM = {"id": "si_over", "price": {"id": "price_over", "recurring": {"interval": "month",
                                                                            "usage_type": "metered"}},
                "current_period_start": T0, "current_period_end": T1}


def subscription(**change: Any) -> dict[str, Any]:
    return {"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active",
            "items": {"data": [METERED_ITEM, BASE_ITEM]}, **change}


def test_snapshot_reads_the_base_item_and_the_item_level_period() -> None:
    s = snapshot(subscription())
    assert (s.base_item_id, s.base_price_id, s.interval) == ("si_base", "price_pro_m", "month")
    assert s.price_ids == ("price_over", "price_pro_m")
    assert (s.current_period_start, s.current_period_end) == (
        datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    ("change", "field", "value"),
    [
        ({"current_period_start": T1, "current_period_end": T1 + 86_400}, "current_period_start",
         datetime(2026, 1, 1, tzinfo=UTC)),  # older API versions: on the subscription
        ({"customer": {"id": "cus_exp", "object": "customer"}}, "customer_id", "cus_exp"),  # expanded customer
        ({"items": {"data": [{"id": "si_x", "price": "price_plain"}]}}, "base_price_id", "price_plain"),
        ({"items": {"data": []}}, "base_item_id", None),
        ({"status": "past_due"}, "status", "past_due"),
        ({"cancel_at_period_end": True}, "cancel_at_period_end", True),
    ],
)
def test_snapshot_shapes(change: dict[str, Any], field: str, value: Any) -> None:
    assert getattr(snapshot(subscription(**change)), field) == value


def test_a_deleted_subscription_is_canceled() -> None:
    assert snapshot(subscription(), deleted=True).status == "canceled"


@pytest.mark.parametrize("obj", [{"object": "invoice", "id": "in_1", "customer": "cus_1"},
                                 {"object": "subscription", "customer": "cus_1"}, {}])
def test_snapshot_refuses_other_objects(obj: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        snapshot(obj)


PLANS = {"price_pro_m": 10_000, "price_pro_y": 120_000}


@pytest.mark.parametrize(
    ("price", "status", "included"),
    [
        ("price_pro_m", "active", 10_000),
        ("price_pro_y", "active", 120_000),
        ("price_pro_m", "past_due", 10_000),  # still billed for the period
        ("price_pro_m", "canceled", 0),
        ("price_unknown", "active", 0),
        (None, "active", 0),
    ],
)
def test_included_jobs(price: str | None, status: str, included: int) -> None:
    assert included_jobs(price, status, PLANS) == included


@pytest.mark.parametrize(
    ("included", "used", "unit", "over", "charge"),
    [
        (10_000, 9_000, "0.5", 0, 0),
        (10_000, 10_000, "0.5", 0, 0),
        (10_000, 10_001, "0.5", 1, 1),  # half a cent rounds half up
        (10_000, 10_002, "0.5", 2, 1),
        (10_000, 12_345, "0.5", 2_345, 1_173),
        (0, 3, "2", 3, 6),
    ],
)
def test_overage(included: int, used: int, unit: str, over: int, charge: int) -> None:
    result = overage(included, used, Decimal(unit), "usd")
    assert (result.overage, result.charge_minor, result.currency) == (over, charge, "usd")


def test_change_items_swaps_only_the_base_item() -> None:
    current = snapshot(subscription())
    assert change_items(current, "price_pro_y") == [{"id": "si_base", "price": "price_pro_y"}]
    with pytest.raises(SubscriptionError, match="already on"):
        change_items(current, "price_pro_m")
    with pytest.raises(SubscriptionError, match="no base"):
        change_items(snapshot(subscription(items={"data": [METERED_ITEM]})), "price_pro_y")


def test_change_key_is_derived_from_the_change() -> None:
    key = change_key("sub_1", "price_pro_y", "always_invoice", T0)
    assert key == change_key("sub_1", "price_pro_y", "always_invoice", T0)
    assert key != change_key("sub_1", "price_pro_y", "none", T0)
    assert len(key) <= 255


SETTINGS = Settings(stripe_pro_price_id="price_pro_m", stripe_pro_annual_price_id="price_pro_y",
                    stripe_metered_overage_price_id="price_over", jobmeter_plan_included_jobs=10_000,
                    stripe_portal_return_url="https://app.example/billing")


def test_checkout_params_carry_the_base_and_the_metered_price() -> None:
    params = checkout_params(SETTINGS, "acme", "cus_1", "pro_annual")
    assert params["line_items"] == [{"price": "price_pro_y", "quantity": 1}, {"price": "price_over"}]
    assert (params["mode"], params["client_reference_id"], params["customer"]) == ("subscription", "acme", "cus_1")
    assert params["subscription_data"]["metadata"] == {"account_id": "acme"}
    with pytest.raises(SubscriptionError, match="STRIPE_METERED_OVERAGE_PRICE_ID"):
        checkout_params(Settings(stripe_pro_price_id="p"), "acme", "cus_1", "pro_monthly")


def test_plans_and_payment_link() -> None:
    assert plans(SETTINGS) == {"price_pro_m": 10_000, "price_pro_y": 120_000}
    assert payment_link(SETTINGS, "acme") is None
    link = SETTINGS.model_copy(update={"next_public_stripe_payment_link_subscription": "https://buy.stripe.com/x"})
    assert payment_link(link, "acme", "a@b.c") == "https://buy.stripe.com/x?client_reference_id=acme&prefilled_email=a%40b.c"
