"""The usage chart's geometry: stacked per day, scaled to a round top, labelled for screen readers."""

from __future__ import annotations

from datetime import date

import pytest

from services.console.chart import (
    HEIGHT,
    OverviewRow,
    days_between,
    nice_ceiling,
    overview_chart,
    period_chart,
    usage_chart,
)

D1, D2, D3 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (10, 10), (11, 20),
                                            (99, 100), (101, 200), (4999, 5000), (5001, 10000)])
def test_nice_ceiling(value: int, top: int) -> None:
    assert nice_ceiling(value) == top


def test_bars_stack_per_day_in_api_order() -> None:
    chart = usage_chart({(D1, "extract"): 6, (D1, "classify"): 4, (D3, "classify"): 2},
                        ["extract", "classify"], days_between(D1, D3))
    assert chart.total == 12
    assert [b.label for b in chart.bars] == [
        "2026-11-01 · extract: 6 jobs", "2026-11-01 · classify: 4 jobs", "2026-11-03 · classify: 2 jobs",
    ]
    first, second, third = chart.bars
    assert first.x == second.x  # stacked
    assert second.y + second.height == pytest.approx(first.y)  # classify sits on extract
    assert first.height + second.height == pytest.approx(HEIGHT - 12 - 40)  # 10 of a top of 10: full height
    assert third.height == pytest.approx(first.height / 3)
    assert first.colour != second.colour
    assert [t.label for t in chart.y_ticks] == ["0", "5", "10"]
    assert "busiest day 2026-11-01 with 10 jobs" in chart.description


@pytest.mark.parametrize(("peak", "labels"), [
    (0, ["0", "1"]), (1, ["0", "1"]), (3, ["0", "1", "2", "3"]), (7, ["0", "2", "4", "6", "8"]),
    (10, ["0", "5", "10"]), (11, ["0", "5", "10", "15"]), (999, ["0", "500", "1000"]),
])
def test_y_ticks_are_whole_distinct_round_numbers_up_to_the_top(peak: int, labels: list[str]) -> None:
    chart = usage_chart({(D1, "extract"): peak}, ["extract"], [D1])
    assert [t.label for t in chart.y_ticks] == labels  # an empty account once read "0, 0, 0, 0, 1"
    assert chart.y_ticks[-1].position == pytest.approx(12)  # the top tick at the top of the plot
    if peak:
        assert chart.bars[0].height == pytest.approx((HEIGHT - 12 - 40) * peak / int(labels[-1]), abs=0.01)


def test_no_usage_is_an_empty_chart_not_an_error() -> None:
    chart = usage_chart({}, ["extract"], days_between(D1, D2))
    assert chart.bars == [] and chart.total == 0
    assert chart.description == "0 jobs over 2 days across 1 API surfaces"


def test_the_period_chart_runs_the_total_to_today_then_fans_out_to_the_forecast() -> None:
    days = days_between(date(2026, 12, 1), date(2026, 12, 30))
    today = date(2026, 12, 10)
    per_day = {d: 10 for d in days if d <= today}
    chart = period_chart(days, today, per_day, point=300, low=260, high=340, included=250, cap=400)
    to_date = [tuple(map(float, p.split(","))) for p in chart.to_date.split()]
    assert len(to_date) == 10  # one point a day up to today
    ys = [y for _, y in to_date]
    assert ys == sorted(ys, reverse=True)  # a running total only rises (y grows downwards)
    start, end = chart.forecast.split()
    assert start == chart.to_date.split()[-1]  # the forecast leaves from today's total
    (fx0, fy0), (fx1, fy1) = (tuple(map(float, p.split(","))) for p in (start, end))
    assert fx1 > fx0 and fy1 < fy0
    band = [tuple(map(float, p.split(","))) for p in chart.band.split()]
    assert band[0] == (fx0, fy0) and band[1][1] < fy1 < band[2][1]  # high above the point, low below
    included, cap = chart.rules
    assert (included.label, cap.label) == ("included: 250", "cap: 400") and cap.y < included.y
    assert [t.label for t in chart.y_ticks][-1] == "400"  # the axis reaches the cap
    assert "100 jobs from 2026-12-01 to 2026-12-10; forecast 300 by 2026-12-30 (260 to 340)" in chart.description


def test_a_period_seen_on_its_last_day_has_no_fan_and_an_empty_one_no_lines() -> None:
    days = days_between(date(2026, 12, 1), date(2026, 12, 3))
    last = period_chart(days, date(2026, 12, 3), {date(2026, 12, 2): 5}, 5, 5, 5, None, None)
    assert len(last.to_date.split()) == 3 and last.forecast == "" and last.band == "" and last.rules == []
    assert period_chart([], date(2026, 12, 3), {}, 0, 0, 0, None, None).to_date == ""


def test_the_overview_puts_every_account_on_one_scale_with_its_cap_and_included_jobs() -> None:
    chart = overview_chart([OverviewRow("big", 400, 800, 1000, None), OverviewRow("small", 50, 100, None, 80)])
    big, small = chart.bars
    assert big.done == 8 * small.done and big.ahead == 8 * small.ahead  # one scale: 400/50 and 400/50
    assert big.cap_x is not None and big.cap_x > chart.plot_left + big.done + big.ahead  # the cap past the forecast
    assert small.included_x is not None and small.cap_x is None and big.included_x is None
    assert [t.label for t in chart.x_ticks][-1] == "1000"
    assert chart.height > 2 * chart.row_height
    assert overview_chart([]).description == "no jobs this period yet"
