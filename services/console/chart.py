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
