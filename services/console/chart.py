"""Usage per API surface and day as a stacked bar chart: the geometry only, drawn as inline SVG by a template.

Pure, so the arithmetic is tested without a browser; no chart library, nothing fetched at runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

# A palette that stays distinguishable for the common kinds of colour blindness (Okabe & Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 40


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str  # the tooltip: "2026-11-03 · extract: 42 jobs"


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[Bar] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (api, colour)
    total: int = 0
    description: str = ""
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    plot_bottom: int = HEIGHT - BOTTOM


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (and at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def y_scale(peak: int) -> tuple[int, int]:
    """The axis for a peak: a step of 1, 2 or 5 times a power of ten with at most four steps up to the peak, and
    the top (the first multiple of the step at or above it), so every tick is a whole, distinct number."""
    peak = max(peak, 1)
    step = nice_ceiling(-(-peak // 4))
    return step, step * -(-peak // step)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def usage_chart(counts: dict[tuple[date, str], int], apis: list[str], days: list[date]) -> Chart:
    """Stacked bars, one per day, one segment per API surface (in the order of `apis`)."""
    chart = Chart()
    chart.legend = [(api, PALETTE[i % len(PALETTE)]) for i, api in enumerate(apis)]
    colours = dict(chart.legend)
    per_day = {d: sum(counts.get((d, a), 0) for a in apis) for d in days}
    chart.total = sum(per_day.values())
    step, top = y_scale(max(per_day.values(), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    bar_w = max(slot * 0.7, 1.0)
    for i, day in enumerate(days):
        x = LEFT + i * slot + (slot - bar_w) / 2
        base = float(HEIGHT - BOTTOM)
        for api in apis:
            n = counts.get((day, api), 0)
            if n <= 0:
                continue
            h = plot_h * n / top
            base -= h
            chart.bars.append(Bar(round(x, 2), round(base, 2), round(bar_w, 2), round(h, 2), colours[api],
                                  f"{day.isoformat()} · {api}: {n} jobs"))
    chart.y_ticks = [Tick(round(HEIGHT - BOTTOM - plot_h * v / top, 2), str(v)) for v in range(0, top + 1, step)]
    every = max(1, len(days) // 8)
    chart.x_ticks = [
        Tick(round(LEFT + i * slot + slot / 2, 2), d.strftime("%b %d")) for i, d in enumerate(days) if i % every == 0
    ]
    busiest = max(per_day, key=lambda d: per_day[d]) if chart.total else None
    chart.description = (
        f"{chart.total} jobs over {len(days)} days across {len(apis)} API surfaces"
        + (f"; busiest day {busiest.isoformat()} with {per_day[busiest]} jobs" if busiest else "")
    )
    return chart


@dataclass(frozen=True)
class Rule:
    """A horizontal line across the plot: the included jobs, or a cap."""

    y: float
    label: str
    colour: str


@dataclass
class PeriodChart:
    """Jobs so far in the billing period, summed day by day, and where the forecast says the period ends."""

    width: int = WIDTH
    height: int = HEIGHT
    to_date: str = ""  # polyline points of the running total, day by day up to today
    forecast: str = ""  # the line from today's total to the forecast at the period's end
    band: str = ""  # the interval: a polygon from today's total to [low, high] at the end
    rules: list[Rule] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    description: str = ""
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    plot_bottom: int = HEIGHT - BOTTOM


def period_chart(days: list[date], today: date, per_day: dict[date, int], point: int, low: int, high: int,
                 included: int | None, cap: int | None) -> PeriodChart:
    """The period's running total up to `today` and the forecast fan to its last day, with the included jobs and
    the cap as rules; one x step per day of `days` (the period's UTC days)."""
    chart = PeriodChart()
    if not days:
        return chart
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step, top = y_scale(max(high, point, included or 0, cap or 0))
    slot = plot_w / max(len(days) - 1, 1)

    def x(i: int) -> float:
        return round(LEFT + i * slot, 2)

    def y(v: float) -> float:
        return round(HEIGHT - BOTTOM - plot_h * v / top, 2)

    total, points = 0, []
    for i, day in enumerate(d for d in days if d <= today):
        total += per_day.get(day, 0)
        points.append(f"{x(i)},{y(total)}")
    now_i, end_i = len(points) - 1, len(days) - 1
    chart.to_date = " ".join(points)
    if end_i > now_i >= 0:
        chart.forecast = f"{x(now_i)},{y(total)} {x(end_i)},{y(point)}"
        chart.band = f"{x(now_i)},{y(total)} {x(end_i)},{y(high)} {x(end_i)},{y(low)}"
    if included:
        chart.rules.append(Rule(y(included), f"included: {included}", "#009E73"))
    if cap:
        chart.rules.append(Rule(y(cap), f"cap: {cap}", "#D55E00"))
    chart.y_ticks = [Tick(y(v), str(v)) for v in range(0, top + 1, step)]
    every = max(1, len(days) // 8)
    chart.x_ticks = [Tick(x(i), d.strftime("%b %d")) for i, d in enumerate(days) if i % every == 0]
    chart.description = (
        f"{total} jobs from {days[0].isoformat()} to {today.isoformat()}; forecast {point} by {days[-1].isoformat()} "
        f"({low} to {high})" + (f"; {included} included" if included else "") + (f"; cap {cap}" if cap else "")
    )
    return chart


@dataclass(frozen=True)
class OverviewRow:
    account_id: str
    to_date: int
    forecast: int
    cap: int | None
    included: int | None


@dataclass(frozen=True)
class OverviewBar:
    y: float
    label: str
    done: float  # the width of the jobs so far
    ahead: float  # the width from there to the forecast
    cap_x: float | None
    included_x: float | None
    title: str


@dataclass
class OverviewChart:
    width: int = WIDTH
    height: int = 0
    bars: list[OverviewBar] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    row_height: int = 22
    plot_left: int = 160
    plot_right: int = WIDTH - RIGHT
    description: str = ""


def overview_chart(rows: list[OverviewRow]) -> OverviewChart:
    """One bar per account: its jobs so far this period, and the rest of the way to its forecast; its cap and
    included jobs as ticks. One scale for all, so accounts compare at a glance."""
    chart = OverviewChart()
    chart.height = TOP + chart.row_height * len(rows) + BOTTOM
    step, top = y_scale(max((max(r.forecast, r.to_date, r.cap or 0, r.included or 0) for r in rows), default=0))
    span = chart.plot_right - chart.plot_left

    def x(v: int) -> float:
        return round(span * v / top, 2)

    for i, r in enumerate(rows):
        chart.bars.append(OverviewBar(
            TOP + i * chart.row_height, r.account_id, x(r.to_date), x(max(r.forecast - r.to_date, 0)),
            chart.plot_left + x(r.cap) if r.cap else None,
            chart.plot_left + x(r.included) if r.included else None,
            f"{r.account_id}: {r.to_date} jobs so far, forecast {r.forecast}"
            + (f", cap {r.cap}" if r.cap else "") + (f", {r.included} included" if r.included else ""),
        ))
    chart.x_ticks = [Tick(round(chart.plot_left + span * v / top, 2), str(v)) for v in range(0, top + 1, step)]
    chart.description = "; ".join(b.title for b in chart.bars) or "no jobs this period yet"
    return chart
