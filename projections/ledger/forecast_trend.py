"""The trend of a period's daily job counts, for the forecast (projections/ledger/forecast.py): pure, standard
library only.

A growing account runs more each day, so the rest of its period is not its days so far again. The slope is a
Theil–Sen estimate (the median of the slopes between every two days: one burst moves it little) over the counts
less their group's level (a group is a weekday, or all the days), so a quiet weekend is not read as a fall. Levels
and slope are fitted together: it starts from the pairs of days within a group, then alternates levels given the
slope and the slope given the levels until it settles. Its standard error is the least-squares one, from the
residuals about the fitted lines.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import date

PASSES = 50  # at most; it settles in a few


@dataclass(frozen=True)
class Trend:
    slope: float  # jobs a day, per day
    error: float  # the slope's standard error
    spread: float  # daily sd of what the levels and the slope do not explain
    dof: int  # the spread's degrees of freedom

    def stands_out(self, z: float) -> bool:
        """Whether the slope is further from none than `z` standard errors of a normal, in Student's t for the
        spread's degrees of freedom (a spread from few days is itself uncertain)."""
        return abs(self.slope) > t_quantile(self.dof, z) * self.error


def _slopes(points: Sequence[tuple[float, float]]) -> list[float]:
    return [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1:] if x2 != x1]


def theil_sen(points: Sequence[tuple[float, float]]) -> float:
    """The median of the slopes between every two points of distinct x (0 with none)."""
    slopes = _slopes(points)
    return float(statistics.median(slopes)) if slopes else 0.0


def t_quantile(dof: int, z: float) -> float:
    """Student's t quantile for the normal one `z`, for a spread estimated from few days (Cornish–Fisher: within
    1.2 % from two degrees of freedom, 12 % short at one)."""
    terms = ((z**3 + z) / 4, (5 * z**5 + 16 * z**3 + 3 * z) / 96, (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384)
    return z + sum(term / float(dof) ** (i + 1) for i, term in enumerate(terms))


def fit(history: list[tuple[date, float]], group: Callable[[date], Hashable], gate: float) -> Trend | None:
    """The slope of the daily counts about their groups' levels; None when it does not stand out of the noise by
    `gate` (Trend.stands_out), or the days leave fewer than two degrees of freedom."""
    first = min(d for d, _ in history).toordinal() if history else 0  # small numbers: levels at day 0 stay exact
    days = [(d.toordinal() - first, v, group(d)) for d, v in history]
    members: dict[Hashable, list[tuple[int, float]]] = {}
    for t, v, g in days:
        members.setdefault(g, []).append((t, v))
    dof = len(days) - len(members) - 1
    centred = sum((t - statistics.fmean(x for x, _ in ms)) ** 2 for ms in members.values() for t, _ in ms)
    if dof < 2 or centred == 0:
        return None

    def levels(slope: float) -> dict[Hashable, float]:
        return {g: statistics.fmean(v - slope * t for t, v in ms) for g, ms in members.items()}

    slope = statistics.median([s for ms in members.values() for s in _slopes(ms)])
    for _ in range(PASSES):
        level = levels(slope)
        slope, before = theil_sen([(t, v - level[g]) for t, v, g in days]), slope
        if abs(slope - before) <= 1e-9 * (abs(slope) + 1):
            break
    level = levels(slope)
    spread = math.sqrt(sum((v - level[g] - slope * t) ** 2 for t, v, g in days) / dof)
    error = spread / math.sqrt(centred)
    trend = Trend(slope, error, spread, dof)
    return trend if trend.stands_out(gate) else None
