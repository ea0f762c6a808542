"""How many jobs an account will have run by the end of its billing period, and when it will reach a cap: pure
arithmetic over the daily job counts of the period so far (UTC days; a day missing from the counts ran no jobs).

The method, kept simple enough to explain to the customer who asks why we warned them:

- **Observed history.** It starts at the later of the period's start and the account's first day (the UTC day it
  was registered or ran its first job, whichever came first): the days of the period before the account existed
  are not days it ran nothing, and counting them as such would drag a new account's rate down by the share of the
  period it did not exist. The first day counts whole, like every day; a day it existed only in part makes the
  forecast a little low, not by the days before it.
- **Run rate by weekday.** Each complete day of the period so far is a sample. A remaining day is expected to run
  the mean of past days on the same weekday when there are at least two of them (API traffic is often quiet at
  weekends), else the mean of every past day: one sample of a weekday is too noisy to stand on its own.
- **Trend.** With at least two weeks of history, the expectation is scaled by the last seven days' jobs over what
  the weekday rates say those same seven days should have run. Comparing like with like (not the last week's mean
  with the overall mean) keeps a weekday/weekend history whose length is not whole weeks from looking like a
  trend. The factor applies only when the difference stands out of the daily noise (more than 1.5 standard
  errors), so a steady account's forecast does not wobble with its last week; it is clamped to [0.5, 2] so one
  burst in the last week cannot double a month's forecast.
- **The current day** counts what it has run, plus its expected rate times the share of it still to come.
  With no complete day yet, today's pace so far is the only rate there is (and nothing at all at its first instant).
- **Interval.** Residuals of past days from their rates give a daily spread `sd` (divided by the days left once
  each fitted mean has taken its degree of freedom). The rest of the period is a sum of `R` day-equivalents; its
  error is the days' own noise (`sd·√R`) plus the error of each rate, shared by every day that uses it
  (`sd·R_w/√n_w` for the `R_w` days resting on `n_w` past days), plus the trend's (`sd·R/√7`) when one applies,
  combined in quadrature, times z = 1.645 (a nominal 90 %). With fewer past days than fitted means the spread is
  taken as the rate itself. The low end never goes below the jobs already run. The nominal 90 % is checked, not
  assumed: `jobmeter forecast --backtest` prints the coverage, and growth is where the method falls short.

Only the standard library (statistics, math): the whole method is a few means and a square root.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

Z = 1.645  # two-sided 90 % of a normal
TREND_MIN, TREND_MAX = 0.5, 2.0
TREND_DAYS = 7
GATE = 1.5  # standard errors a trend must stand out by
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Forecast:
    jobs_to_date: int
    forecast_jobs: int
    forecast_low: int
    forecast_high: int
    cap_reached_on: date | None


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _overlap(day: date, lo: datetime, hi: datetime) -> float:
    """The share of UTC day `day` inside [lo, hi)."""
    begin, end = max(_midnight(day), lo), min(_midnight(day) + DAY, hi)
    return max((end - begin) / DAY, 0.0)


@dataclass(frozen=True)
class _Rates:
    by_weekday: dict[int, float]
    samples: dict[int, int]  # past days behind each weekday's rate
    overall: float
    days: int  # past days behind the overall rate
    trend: float
    spread: float  # daily sd of what the rates do not explain

    def of(self, day: date) -> float:
        return self.by_weekday.get(day.weekday(), self.overall) * self.trend

    def error(self, to_come: list[tuple[date, float]]) -> float:
        """sd of the jobs still to come: each day's own noise, plus the error of each rate (shared by every day
        that uses it, so it grows with their number, not its root), plus the trend's (resting on seven days)."""
        shares: dict[int | None, float] = {}
        for day, share in to_come:
            key = day.weekday() if day.weekday() in self.by_weekday else None
            shares[key] = shares.get(key, 0.0) + share
        remaining = sum(shares.values())
        variance = remaining + sum(s * s / max(self.samples.get(k, self.days) if k is not None else self.days, 1)
                                   for k, s in shares.items())
        if self.trend != 1.0:
            variance += remaining**2 / TREND_DAYS
        return self.spread * math.sqrt(variance)


def _rates(history: list[tuple[date, float]], today_pace: float) -> _Rates:
    if not history:
        return _Rates({}, {}, today_pace, 0, 1.0, today_pace)
    overall = statistics.fmean(v for _, v in history)
    groups: dict[int, list[float]] = {}
    for day, value in history:
        groups.setdefault(day.weekday(), []).append(value)
    by_weekday = {w: statistics.fmean(vs) for w, vs in groups.items() if len(vs) >= 2}

    def base(day: date) -> float:
        return by_weekday.get(day.weekday(), overall)

    # Residuals from fitted means understate the noise by one degree of freedom per mean fitted.
    fitted = len(by_weekday) + any(d.weekday() not in by_weekday for d, _ in history)
    if len(history) > fitted:
        spread = math.sqrt(sum((v - base(d)) ** 2 for d, v in history) / (len(history) - fitted))
    else:
        spread = overall
    trend = 1.0
    if len(history) >= 2 * TREND_DAYS:
        recent = history[-TREND_DAYS:]
        expected = sum(base(d) for d, _ in recent)
        # Only a trend that stands out of the noise (GATE standard errors of a seven-day sum) moves the rate.
        if expected > 0 and abs(sum(v for _, v in recent) - expected) > GATE * spread * math.sqrt(TREND_DAYS):
            trend = min(max(sum(v for _, v in recent) / expected, TREND_MIN), TREND_MAX)
    return _Rates(by_weekday, {w: len(vs) for w, vs in groups.items()}, overall, len(history), trend, spread)


def forecast(
    start: datetime, end: datetime, now: datetime, daily: Mapping[date, int], cap: int | None = None,
    since: datetime | None = None,
) -> Forecast:
    """The forecast for the period [start, end) as seen at `now` (start <= now <= end), from the period's daily
    job counts so far; `cap_reached_on` is the UTC day the running total reaches `cap` (already or expected),
    None when it will not within the period or no cap is given. `since` is when the account began (registered or
    first ran a job): the period's days before its day are no part of the history."""
    if start.tzinfo is None or end.tzinfo is None or now.tzinfo is None or (since and since.tzinfo is None):
        raise ValueError("start, end, now and since need a time zone")
    if not start < end:
        raise ValueError("the period must end after it starts")
    if not start <= now <= end:
        raise ValueError("now must fall inside the period")
    if cap is not None and cap < 0:
        raise ValueError("a cap is a number of jobs, at least 0")
    start, end, now = start.astimezone(UTC), end.astimezone(UTC), now.astimezone(UTC)
    observed = start if since is None else min(max(start, _midnight(since.astimezone(UTC).date())), now)
    first, last, today = start.date(), (end - timedelta(microseconds=1)).date(), now.date()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    past = [d for d in days if d < today]
    done = {d: daily.get(d, 0) for d in days if d <= today}
    jobs_to_date = sum(done.values())

    # A past day only partly inside the period (a period starting mid-day) counts as its full-day rate.
    history = [(d, done[d] / w) for d in past if (w := _overlap(d, observed, end)) > 0]
    elapsed_today = _overlap(today, observed, now)
    pace = done.get(today, 0) / elapsed_today if elapsed_today > 0 else 0.0
    rates = _rates(history, pace)

    # Expected jobs still to come, per day (today's remainder first).
    shares = [(d, share) for d in days if d >= today and (share := _overlap(d, max(start, now), end))]
    to_come = [(d, rates.of(d) * share) for d, share in shares]
    point = jobs_to_date + sum(jobs for _, jobs in to_come)
    error = Z * rates.error(shares)

    return Forecast(
        jobs_to_date=jobs_to_date,
        forecast_jobs=round(point),
        # The nudges keep float dust (3000.0000000004) from widening an exact forecast by a job.
        forecast_low=max(jobs_to_date, math.floor(point - error + 1e-6)),
        forecast_high=math.ceil(point + error - 1e-6),
        cap_reached_on=None if cap is None else _cap_day(cap, done, to_come),
    )


def _cap_day(cap: int, done: Mapping[date, int], to_come: list[tuple[date, float]]) -> date | None:
    total = 0.0
    running: dict[date, float] = {}
    for day in sorted(done):
        total += done[day]
        running[day] = total
    for day, jobs in to_come:
        total += jobs
        running[day] = total
    return next((day for day in sorted(running) if running[day] >= cap), None)
