"""The usage chart's geometry: stacked per day, scaled to a round top, labelled for screen readers."""

from __future__ import annotations

from datetime import date

import pytest

from services.console.chart import HEIGHT, days_between, nice_ceiling, usage_chart

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
