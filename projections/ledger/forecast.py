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
- **Trend.** With two weeks of history every weekday has been seen twice, and a trend can be told from a weekly
  pattern: a slope (Theil–Sen, robust to the odd burst, fitted together with the weekday levels:
  `forecast_trend.py`) moves each rate from its days' mean day to the day forecast (a falling one stops at none),
  when it stands out of the daily noise as a flat history's would by chance once in a hundred (Student's t for
  the residuals' degrees of freedom: 2.6 standard errors with many days, 3.5 with fifteen). Extrapolated over
  weeks a false slope costs much, and a steady account's forecast should not wobble with one. A slope that stands
  out less, but as only one in twenty would, does not move the forecast; the interval stretches to hold the
  line's forecast and its interval too. Before two weeks a line through the days may be a weekly pattern (a
  weekend closing the first week looks like a fall): one that stands out as much as would move the forecast only
  stretches the interval, and a growth that does not goes unseen.
- **The current day** counts what it has run, plus its expected rate times the share of it still to come.
  With no complete day yet, today's pace so far is the only rate there is (and nothing at all at its first instant).
- **Interval.** Residuals of past days from their rates (and the slope) give a daily spread `sd` (divided by the
  days left once each fitted mean, and the slope, has taken its degree of freedom). The rest of the period is a
  sum of `R` day-equivalents; its error is the days' own noise (`sd·√R`, each day's scaled by the level the slope
  takes it to: a growing account's days grow noisier), plus the error of each rate, shared by every day that uses
  it (`sd·R_w/√n_w` for the `R_w` days resting on `n_w` past days), plus the slope's (its standard error times the
  days' summed distance from their rates' mean days), combined in quadrature, times Student's t for the spread's
  degrees of freedom (a nominal 90 %: few days make the spread itself uncertain). With fewer past days than fitted
  means the spread is taken as the rate itself (and z = 1.645). The low end never goes below the jobs already run.
  The nominal 90 % is checked, not assumed: `jobmeter forecast --backtest` prints the coverage.

Only the standard library (statistics, math): the whole method is a few means, medians and square roots.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from projections.ledger.forecast_trend import Trend, t_quantile
from projections.ledger.forecast_trend import fit as fit_trend

Z = 1.645  # two-sided 90 % of a normal
LINE_DAYS = 7  # a line through fewer days is not looked for
# How far a slope must stand out of the noise (normal quantiles, made Student's t) to move the forecast (1 % of
# flat histories would, by chance), and to stretch the interval (5 %).
GATE, HINT = 2.576, 1.96
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
    spread: float  # daily sd of what the rates (and the trend) do not explain
    centres: dict[int | None, float]  # the mean day (ordinal) behind each rate; None: the overall one
    trend: Trend | None
    dof: int  # the spread's degrees of freedom; 0: a guess (the rate itself)

    @property
    def quantile(self) -> float:
        return t_quantile(self.dof, Z) if self.dof else Z

    def _key(self, day: date) -> int | None:
        return day.weekday() if day.weekday() in self.by_weekday else None

    def of(self, day: date) -> float:
        rate = self.by_weekday.get(day.weekday(), self.overall)
        if self.trend is not None:  # each rate is its days' mean at their mean day, and moves by the slope
            rate += self.trend.slope * (day.toordinal() - self.centres[self._key(day)])
        return max(rate, 0.0)

    def _noise(self, day: date) -> float:
        """A day's noise over the spread: its level over the past days' mean level (the spread's), as the slope
        takes it there; traffic is the noisier the more of it there is."""
        if self.trend is None or self.overall <= 0:
            return 1.0
        return max(self.overall + self.trend.slope * (day.toordinal() - self.centres[None]), 0.0) / self.overall

    def error(self, to_come: list[tuple[date, float]]) -> float:
        """sd of the jobs still to come: each day's own noise, plus the error of each rate (shared by every day
        that uses it, so it grows with their number, not its root), plus the slope's (times how far each day is
        from the days its rate rests on)."""
        shares: dict[int | None, float] = {}
        for day, share in to_come:
            shares[self._key(day)] = shares.get(self._key(day), 0.0) + share
        variance = sum(share * self._noise(day) ** 2 for day, share in to_come) + sum(
            s * s / max(self.samples.get(k, self.days) if k is not None else self.days, 1) for k, s in shares.items())
        variance *= self.spread**2
        if self.trend is not None:
            lever = sum(share * (day.toordinal() - self.centres[self._key(day)]) for day, share in to_come)
            variance += (self.trend.error * lever) ** 2
        return math.sqrt(variance)


def _trends(history: list[tuple[date, float]], weekly: bool) -> tuple[Trend | None, Trend | None]:
    """The slope that moves the forecast, or one that only stretches the interval (at most one of the two)."""
    if weekly:
        fitted = fit_trend(history, lambda d: d.weekday(), HINT)
        if fitted is not None and fitted.stands_out(GATE):
            return fitted, None
        return None, fitted
    return None, fit_trend(history, lambda d: None, GATE) if len(history) >= LINE_DAYS else None


def _rates(history: list[tuple[date, float]], today_pace: float) -> tuple[_Rates, _Rates | None]:
    """The rates of the remaining days; and the same with a slope that stands out of the noise, but not enough to
    move the forecast or not apart from a weekly pattern (some weekday seen once): that one stretches the interval."""
    if not history:
        return _Rates({}, {}, today_pace, 0, today_pace, {}, None, 0), None
    overall = statistics.fmean(v for _, v in history)
    groups: dict[int, list[tuple[date, float]]] = {}
    for day, value in history:
        groups.setdefault(day.weekday(), []).append((day, value))
    by_weekday = {w: statistics.fmean(v for _, v in dvs) for w, dvs in groups.items() if len(dvs) >= 2}
    samples = {w: len(dvs) for w, dvs in groups.items()}
    centres: dict[int | None, float] = {w: statistics.fmean(d.toordinal() for d, _ in groups[w]) for w in by_weekday}
    centres[None] = statistics.fmean(d.toordinal() for d, _ in history)

    def base(day: date) -> float:
        return by_weekday.get(day.weekday(), overall)

    weekly = len(by_weekday) == len(groups)  # every weekday seen twice: a trend and a weekly pattern tell apart
    trend, line = _trends(history, weekly)
    # Residuals from fitted means understate the noise by one degree of freedom per mean fitted.
    fitted = len(by_weekday) + any(d.weekday() not in by_weekday for d, _ in history)
    if trend is not None:
        spread, dof = trend.spread, trend.dof
    elif len(history) > fitted:
        dof = len(history) - fitted
        spread = math.sqrt(sum((v - base(d)) ** 2 for d, v in history) / dof)
    else:
        spread, dof = overall, 0
    rates = _Rates(by_weekday, samples, overall, len(history), spread, centres, trend, dof)
    if line is None:
        return rates, None
    if weekly:
        return rates, replace(rates, spread=line.spread, trend=line, dof=line.dof)
    return rates, _Rates({}, {}, overall, len(history), line.spread, {None: centres[None]}, line, line.dof)


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
    rates, line = _rates(history, pace)

    # Expected jobs still to come, per day (today's remainder first).
    shares = [(d, share) for d in days if d >= today and (share := _overlap(d, max(start, now), end))]
    to_come = [(d, rates.of(d) * share) for d, share in shares]
    point = jobs_to_date + sum(jobs for _, jobs in to_come)
    error = rates.quantile * rates.error(shares)
    low, high = point - error, point + error
    if line is not None:  # a slope not sure enough to move the forecast: the interval holds the line's too
        along = jobs_to_date + sum(line.of(d) * share for d, share in shares)
        reach = line.quantile * line.error(shares)
        low, high = min(low, along - reach), max(high, along + reach)

    return Forecast(
        jobs_to_date=jobs_to_date,
        forecast_jobs=round(point),
        # The nudges keep float dust (3000.0000000004) from widening an exact forecast by a job.
        forecast_low=max(jobs_to_date, math.floor(low + 1e-6)),
        forecast_high=math.ceil(high - 1e-6),
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
