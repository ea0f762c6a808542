"""Scoring the period forecast (projections/ledger/forecast.py) on generated 30-day histories whose truth is known.

Four kinds of account, each drawn afresh per run from one seeded random.Random so a score is reproducible:
steady (a flat rate), growing (a rate rising linearly, ending 1.5-3x where it began), weekly (weekends at 10-30 %
of weekdays) and spiky (a flat rate with bursts of 3-10x on about one day in ten). A day's count is Poisson-ish:
normal around the rate with the Poisson variance plus 10 % day-to-day drift, as real traffic is more variable than
Poisson. The period starts on a random weekday. At 25, 50 and 75 % of the period the forecast sees the days so far
(the current day's jobs in proportion to its elapsed share) and is scored against the period's real total: mean
absolute percentage error, the share of runs whose truth fell inside [low, high], and the interval's mean width
(high - low over the truth: coverage alone would reward an interval wide enough to say nothing).
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from projections.ledger.forecast import forecast

KINDS = ("steady", "growing", "weekly", "spiky")
POINTS = (0.25, 0.5, 0.75)
PERIOD_DAYS = 30
DRIFT = 0.10  # day-to-day variation beyond Poisson, as a share of the rate


def _rates(kind: str, rng: random.Random, start: date) -> list[float]:
    base = rng.uniform(50, 2000)
    days = [start + timedelta(days=i) for i in range(PERIOD_DAYS)]
    if kind == "steady":
        return [base] * PERIOD_DAYS
    if kind == "growing":
        growth = rng.uniform(0.5, 2.0)  # the last day runs 1 + growth times the first
        return [base * (1 + growth * i / (PERIOD_DAYS - 1)) for i in range(PERIOD_DAYS)]
    if kind == "weekly":
        weekend = rng.uniform(0.1, 0.3)
        return [base * (weekend if d.weekday() >= 5 else 1.0) for d in days]
    if kind == "spiky":
        return [base * (rng.uniform(3, 10) if rng.random() < 0.1 else 1.0) for _ in days]
    raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")


def _count(rate: float, rng: random.Random) -> int:
    return max(0, round(rng.gauss(rate, math.sqrt(rate + (DRIFT * rate) ** 2))))


def history(kind: str, rng: random.Random) -> tuple[datetime, list[int]]:
    """A period start (UTC midnight, a random weekday) and its 30 daily counts."""
    start = date(2026, 1, 5) + timedelta(days=rng.randrange(7))
    counts = [_count(rate, rng) for rate in _rates(kind, rng, start)]
    return datetime(start.year, start.month, start.day, tzinfo=UTC), counts


@dataclass(frozen=True)
class Score:
    kind: str
    at: float  # share of the period elapsed
    mape: float  # percent
    coverage: float  # share of runs with the truth inside [low, high]
    width: float  # percent: mean (high - low) / truth

    def as_json(self) -> dict[str, str | float]:
        return {"kind": self.kind, "at": self.at, "mape": round(self.mape, 2), "coverage": round(self.coverage, 3),
                "width": round(self.width, 2)}


def score(kind: str, at: float, runs: int, seed: int) -> Score:
    rng = random.Random(f"{seed}:{kind}:{at}")  # a string seed is hashed deterministically (SHA-512)
    errors: list[float] = []
    widths: list[float] = []
    inside = 0
    for _ in range(runs):
        start, counts = history(kind, rng)
        end = start + timedelta(days=PERIOD_DAYS)
        now = start + timedelta(days=PERIOD_DAYS * at)
        whole = int(PERIOD_DAYS * at)
        seen = {(start + timedelta(days=i)).date(): counts[i] for i in range(whole)}
        if whole < PERIOD_DAYS:  # the current day, as far as it has gone
            seen[(start + timedelta(days=whole)).date()] = round(counts[whole] * (PERIOD_DAYS * at - whole))
        result = forecast(start, end, now, seen)
        truth = sum(counts)
        errors.append(abs(result.forecast_jobs - truth) / truth)
        inside += result.forecast_low <= truth <= result.forecast_high
        widths.append((result.forecast_high - result.forecast_low) / truth)
    return Score(kind, at, 100 * statistics.fmean(errors), inside / runs, 100 * statistics.fmean(widths))


def backtest(runs: int = 200, seed: int = 17, kinds: tuple[str, ...] = KINDS,
             points: tuple[float, ...] = POINTS) -> list[Score]:
    """Every kind at every point, `runs` seeded periods each."""
    return [score(kind, at, runs, seed) for kind in kinds for at in points]
