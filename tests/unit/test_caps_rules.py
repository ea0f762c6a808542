"""The caps' pure rules: the period, what a period's usage holds, the alerts it crosses, and settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from events.stripe import StripeEventReceived
from projections.caps.projection import CapsConfig, subscription_grid
from projections.caps.rules import (
    ALL,
    Cap,
    Grid,
    Overage,
    Period,
    effective_caps,
    evaluate,
    included_crossings,
    month_of,
    parse_percents,
    period_of,
    spent_minor,
)
from projections.subscriptions.state import OVERAGE_MINOR_PER_JOB
from services.stripe_adapter.fixtures import build_event

PRICES = {"extract": 5, "classify": 3}


@pytest.mark.parametrize(("at", "start", "end"), [
    (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC),
     datetime(2027, 1, 1, tzinfo=UTC)),
    (datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC)),
    (datetime(2028, 2, 29, 12, tzinfo=UTC), datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)),
    # An offset time counts in the UTC month it falls in.
    (datetime(2027, 1, 31, 23, tzinfo=UTC) + timedelta(hours=2), datetime(2027, 2, 1, tzinfo=UTC),
     datetime(2027, 3, 1, tzinfo=UTC)),
])
def test_the_period_is_the_utc_calendar_month_and_ends_where_the_next_begins(
    at: datetime, start: datetime, end: datetime,
) -> None:
    assert month_of(at) == Period(start, end)
    assert month_of(end).start == end  # the period's end is the next one's start: a cap lifts there


@pytest.mark.parametrize(("caps", "usage", "held"), [
    ([Cap(ALL, 5)], {"extract": 4}, None),
    ([Cap(ALL, 5)], {"extract": 4, "classify": 1}, "hard cap reached: 5 jobs this period"),
    ([Cap(ALL, 5, hard=False)], {"extract": 9}, None),  # soft: alerts only
    ([Cap("classify", 2)], {"extract": 50, "classify": 1}, None),
    ([Cap("classify", 2)], {"classify": 2}, "hard cap reached: 2 jobs on classify this period"),
    ([Cap(ALL, 100, spend_minor=20)], {"extract": 4}, "hard cap reached: spend of 20 (minor units) this period"),
    ([], {"extract": 10**6}, None),
])
def test_a_hard_cap_holds_from_the_job_that_reaches_it(caps: list[Cap], usage: dict[str, int],
                                                        held: str | None) -> None:
    assert evaluate(caps, usage, PRICES, (80, 100)).hold == held


def test_every_threshold_at_or_past_is_a_crossing_and_the_limit_is_reached_at_100_percent() -> None:
    verdict = evaluate([Cap(ALL, 10, hard=False), Cap("extract", 100)], {"extract": 8}, PRICES, (50, 80, 100))
    assert sorted(c.key for c in verdict.crossings) == ["cap:*:50", "cap:*:80"]
    assert verdict.reached == ()
    verdict = evaluate([Cap(ALL, 10, hard=False)], {"extract": 12}, PRICES, (80, 100))
    assert [c.reached_key for c in verdict.reached] == ["reached:cap:*"] and verdict.hold is None


def test_the_plan_default_applies_only_where_the_account_set_no_cap_on_all_jobs() -> None:
    assert effective_caps([], 0) == []
    assert effective_caps([], 1000) == [Cap(ALL, 1000)]
    assert effective_caps([Cap("extract", 5)], 1000) == [Cap("extract", 5), Cap(ALL, 1000)]
    assert effective_caps([Cap(ALL, 50, hard=False)], 1000) == [Cap(ALL, 50, hard=False)]


def test_alert_percents_are_parsed_and_checked() -> None:
    assert parse_percents("100, 80,80") == (80, 100)
    for bad in ("", "0", "80,0"):
        with pytest.raises(ValueError, match="whole percents"):
            parse_percents(bad)


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


MONTHLY = Grid.of(utc(2027, 1, 31, 10), utc(2027, 2, 28, 10))  # anchored on the 31st: Stripe clamps short months


@pytest.mark.parametrize(("at", "start", "end"), [
    (utc(2027, 2, 1), utc(2027, 1, 31, 10), utc(2027, 2, 28, 10)),  # the stated period
    (utc(2027, 2, 28, 10), utc(2027, 2, 28, 10), utc(2027, 3, 31, 10)),  # the next: back on the 31st
    (utc(2027, 5, 1), utc(2027, 4, 30, 10), utc(2027, 5, 31, 10)),
    (utc(2027, 1, 31, 9), utc(2026, 12, 31, 10), utc(2027, 1, 31, 10)),  # before it
])
def test_a_subscription_period_is_stripes_then_steps_from_its_anchor(at: datetime, start: datetime,
                                                                     end: datetime) -> None:
    assert period_of(at, MONTHLY) == Period(start, end)
    assert period_of(at, None) == month_of(at)


def test_an_annual_subscription_steps_by_years() -> None:
    grid = Grid.of(utc(2026, 3, 15), utc(2027, 3, 15))
    assert grid.months == 12
    assert period_of(utc(2028, 1, 1), grid) == Period(utc(2027, 3, 15), utc(2028, 3, 15))


def subscription_event(status: str, kind: str = "customer.subscription.updated") -> StripeEventReceived:
    obj = build_event(kind, "cus_G", status=status, created=1_800_000_000)["data"]["object"]
    return StripeEventReceived(stripe_event_id="evt_g", type=kind, created=utc(2027, 1, 15), customer_id="cus_G",
                               data_object=obj)


def test_a_live_subscription_sets_its_grid_and_an_ended_one_the_calendar_month_again() -> None:
    stated = subscription_event("active").data_object
    start, end = (datetime.fromtimestamp(stated[f"current_period_{edge}"], UTC) for edge in ("start", "end"))
    assert subscription_grid(subscription_event("active")) == Grid.of(start, end)
    assert subscription_grid(subscription_event("past_due")) is not None
    assert subscription_grid(subscription_event("canceled", "customer.subscription.deleted")) is None


def test_the_included_jobs_of_a_plan_are_alerted_on_never_held() -> None:
    crossed = included_crossings(1000, {"extract": 700, "classify": 150}, (80, 100))
    assert [(c.limit_kind, c.percent, c.limit, c.used, c.hard) for c in crossed] == [("included", 80, 1000, 850, False)]
    assert [c.key for c in included_crossings(1000, {"extract": 1000}, (80, 100))] == ["included:*:80",
                                                                                       "included:*:100"]
    assert included_crossings(None, {"extract": 10**6}, (80, 100)) == ()
    assert included_crossings(0, {"extract": 10**6}, (80, 100)) == ()


def test_a_cap_on_some_surfaces_holds_those_and_one_on_all_jobs_holds_every_surface() -> None:
    caps = [Cap("classify", 2), Cap("extract", 3), Cap("translate", 1, hard=False), Cap(ALL, 100)]
    assert evaluate(caps, {"classify": 2, "translate": 5}, PRICES, (100,)).scope == ("classify",)
    both = evaluate(caps, {"classify": 2, "extract": 3}, PRICES, (100,))
    assert both.scope == ("classify", "extract") and both.hold is not None
    assert "2 jobs on classify" in both.hold and "3 jobs on extract" in both.hold
    everything = evaluate(caps, {"classify": 2, "extract": 98}, PRICES, (100,))
    assert everything.scope is None and everything.hold is not None  # the cap on all jobs too
    spend = evaluate([Cap("extract", 1000, spend_minor=10)], {"extract": 2}, PRICES, (100,))
    assert spend.scope == ("extract",) and spend.hold is not None


# A plan including 100 jobs: 150 extract and 50 classify jobs are 100 past it, 50 minor units at 0.5 each.
USAGE = {"extract": 150, "classify": 50}
PLAN = Overage(100, Decimal("0.5"))


def test_a_subscription_spends_its_overage_and_a_payg_account_its_prices() -> None:
    assert spent_minor(USAGE, ALL, PLAN) == 50
    assert spent_minor(USAGE, ALL, PRICES) == 150 * 5 + 50 * 3
    assert spent_minor({"extract": 100}, ALL, PLAN) == 0  # the included jobs cost nothing
    assert spent_minor({"extract": 101}, ALL, PLAN) == 1  # half a cent, rounded as the invoice does (half up)
    # One surface's share of the overage is in proportion to its jobs, rounded down.
    assert (spent_minor(USAGE, "extract", PLAN), spent_minor(USAGE, "classify", PLAN)) == (37, 12)
    assert spent_minor({}, "extract", PLAN) == 0


def test_a_spend_cap_holds_a_subscription_on_its_overage_not_on_payg_prices() -> None:
    cap = [Cap(ALL, 10**6, spend_minor=60)]
    assert evaluate(cap, USAGE, PRICES, (80, 100)).hold is not None  # 900 at PAYG prices
    verdict = evaluate(cap, USAGE, PLAN, (80, 100))
    assert verdict.hold is None and [c.key for c in verdict.crossings] == ["spend_cap:*:80"]  # 50 of 60
    assert evaluate(cap, {"extract": 220}, PLAN, (100,)).hold == \
        "hard cap reached: spend of 60 (minor units) this period"


def test_the_fold_prices_an_account_by_its_live_plan_else_by_payg() -> None:
    config = CapsConfig(prices=PRICES, plans={"price_pro": 100})
    assert config.terms(None) == PRICES
    assert config.terms("price_pro") == Overage(100, OVERAGE_MINOR_PER_JOB)
    assert config.terms("price_unknown") == Overage(0, OVERAGE_MINOR_PER_JOB)  # includes nothing, as invoiced
