"""The caps' pure rules: an account's period, what its usage in that period holds, and which alerts it crossed.

No I/O. An account's billing period is its live Stripe subscription's (the grid its current period lies on:
monthly or yearly steps from the period's start, kept on the same day of the month as Stripe keeps a billing
anchor), else the UTC calendar month. A cap is reached at its limit: the job that makes the count equal to the cap
is the last one the key check lets through (jobs in flight while the hold travels overshoot it: docs/keys.md).

What a period's jobs cost, for a spend cap, depends on how the account pays: an account on a live subscription
pays the overage past its plan's included jobs at the metered price (`Overage`); any other account is priced at
the PAYG prices of its API surfaces.
"""

from __future__ import annotations

import calendar
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from projections.subscriptions.state import OVERAGE_MINOR_PER_JOB, overage

ALL = ""  # the scope of a cap on every API surface (how the tables key it; events carry null)


@dataclass(frozen=True)
class Cap:
    scope: str  # an API surface, or ALL
    jobs: int
    hard: bool = True
    spend_minor: int | None = None


@dataclass(frozen=True)
class Overage:
    """A live subscription's terms: the period includes `included` jobs, and each job past them costs `unit_minor`."""

    included: int
    unit_minor: Decimal = OVERAGE_MINOR_PER_JOB


SpendTerms = Mapping[str, int] | Overage  # PAYG prices per API surface, or a subscription's overage


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Crossing:
    """A threshold of a limit that the period's usage is at or past: an alert to send once per period."""

    limit_kind: str  # "cap" | "spend_cap" | "included"
    scope: str
    percent: int
    limit: int
    used: int
    hard: bool

    @property
    def key(self) -> str:
        """Its name among the period's alerts, raised once each."""
        return f"{self.limit_kind}:{self.scope or '*'}:{self.percent}"

    @property
    def reached_key(self) -> str:
        return f"reached:{self.limit_kind}:{self.scope or '*'}"


@dataclass(frozen=True)
class Verdict:
    hold: str | None  # why the keys stop, when a hard cap is reached
    crossings: tuple[Crossing, ...]  # every alert threshold the usage is at or past
    reached: tuple[Crossing, ...]  # every limit (hard or soft) the usage is at or past, as its 100 %
    # The API surfaces the hold stops: those of the hard caps reached, or None (every surface) when one of them
    # counts all surfaces. Meaningless without a hold.
    scope: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Grid:
    """A subscription's periods: the current one as Stripe states it, and the others in whole steps of `months`
    (1 or 12) from `anchor` (its billing cycle anchor, else the current period's start)."""

    anchor: datetime
    months: int
    start: datetime
    end: datetime

    @classmethod
    def of(cls, start: datetime, end: datetime, anchor: datetime | None = None) -> Grid:
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        return cls((anchor or start).astimezone(UTC), 12 if end - start > timedelta(days=300) else 1, start, end)


def add_months(anchor: datetime, months: int) -> datetime:
    """`anchor` moved by whole months, on the same day, or the month's last when it is shorter (Jan 31 → Feb 28)."""
    index = anchor.year * 12 + anchor.month - 1 + months
    year, month = divmod(index, 12)
    return anchor.replace(year=year, month=month + 1, day=min(anchor.day, calendar.monthrange(year, month + 1)[1]))


def period_of(at: datetime, grid: Grid | None) -> Period:
    """The billing period holding `at`: on the subscription's grid, else the calendar month."""
    if grid is None:
        return month_of(at)
    at = at.astimezone(UTC)
    if grid.start <= at < grid.end:
        return Period(grid.start, grid.end)
    step = (at.year - grid.anchor.year) * 12 + at.month - grid.anchor.month
    k = step // grid.months
    while add_months(grid.anchor, k * grid.months) > at:
        k -= 1
    while add_months(grid.anchor, (k + 1) * grid.months) <= at:
        k += 1
    start, end = add_months(grid.anchor, k * grid.months), add_months(grid.anchor, (k + 1) * grid.months)
    # Next to the stated period, a stepped one ends (or starts) where the stated one starts (or ends).
    return Period(max(start, grid.end), end) if at >= grid.end else Period(start, min(end, grid.start))


def period_starts(jobs: Iterable[tuple[str, datetime]], grids: Mapping[str, Grid], skip: Container[str] = (),
                  ) -> list[datetime | None]:
    """The start of each job's (account, completed at) period, None for an account in `skip` (recounted whole).
    A batch's jobs mostly fall in their account's period of the job before: that is checked first, since finding a
    period per job was an eighth of the fold's time (py-spy, issue 18)."""
    starts: list[datetime | None] = []
    last: dict[str, Period] = {}
    for account, at in jobs:
        period = last.get(account)
        if period is None or not period.start <= at < period.end:
            if account in skip:
                starts.append(None)
                continue
            period = last[account] = period_of(at, grids.get(account))
        starts.append(period.start)
    return starts


def month_of(at: datetime) -> Period:
    """The UTC calendar month holding `at`."""
    at = at.astimezone(UTC)
    return Period(datetime(at.year, at.month, 1, tzinfo=UTC),
                  datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC))


def effective_caps(own: Sequence[Cap], default_jobs: int) -> list[Cap]:
    """The account's own caps, and the plan's default hard cap on all jobs where it set none of its own."""
    if default_jobs > 0 and not any(c.scope == ALL for c in own):
        return [*own, Cap(ALL, default_jobs)]
    return list(own)


def used_jobs(usage: Mapping[str, int], scope: str) -> int:
    return sum(usage.values()) if scope == ALL else usage.get(scope, 0)


def spent_minor(usage: Mapping[str, int], scope: str, terms: SpendTerms) -> int:
    """What the period's jobs (of one API surface, or ALL) cost, in minor units. A subscription's overage is the
    account's, not a surface's: one surface's share of it is in proportion to its jobs (rounded down), whichever
    jobs came first, so it does not depend on the order they were counted in."""
    if isinstance(terms, Overage):
        total = sum(usage.values())
        charge = overage(terms.included, total, terms.unit_minor, "").charge_minor
        return charge if scope == ALL else (charge * usage.get(scope, 0) // total if total else 0)
    return sum(n * terms.get(api, 0) for api, n in usage.items() if scope in (ALL, api))


def evaluate(caps: Sequence[Cap], usage: Mapping[str, int], prices: SpendTerms,
             percents: Sequence[int]) -> Verdict:
    """What the period's usage (jobs per API surface) holds against the caps, priced by `prices` (the account's
    spend terms), and every threshold it is past."""
    reasons: list[str] = []
    crossings: list[Crossing] = []
    reached: list[Crossing] = []
    stopped: set[str] = set()
    for cap in sorted(caps, key=lambda c: c.scope):
        on = f" on {cap.scope}" if cap.scope != ALL else ""
        # The reason names the limit, not the count: it stays the same while jobs in flight add to the count, so
        # the hold is published once, and again only when the caps change.
        limits = [("cap", cap.jobs, used_jobs(usage, cap.scope), f"{cap.jobs} jobs{on} this period")]
        if cap.spend_minor is not None:
            limits.append(("spend_cap", cap.spend_minor, spent_minor(usage, cap.scope, prices),
                           f"spend of {cap.spend_minor} (minor units){on} this period"))
        for kind, limit, used, words in limits:
            crossings += [Crossing(kind, cap.scope, p, limit, used, cap.hard) for p in percents
                          if used * 100 >= p * limit]
            if used >= limit:
                reached.append(Crossing(kind, cap.scope, 100, limit, used, cap.hard))
                if cap.hard:
                    reasons.append("hard cap reached: " + words)
                    stopped.add(cap.scope)
    scope = None if ALL in stopped or not stopped else tuple(sorted(stopped))
    return Verdict("; ".join(reasons) or None, tuple(crossings), tuple(reached), scope)


def included_crossings(included: int | None, usage: Mapping[str, int], percents: Sequence[int]) -> tuple[Crossing, ...]:
    """Every alert threshold of the period's included jobs (a subscription's plan) the usage is at or past: an alert,
    never a hold (jobs past them are overage, billed)."""
    if not included:
        return ()
    used = used_jobs(usage, ALL)
    return tuple(Crossing("included", ALL, p, included, used, False) for p in percents if used * 100 >= p * included)


def parse_percents(text: str) -> tuple[int, ...]:
    """`80,100` → (80, 100); ValueError for anything but positive whole percents."""
    values = tuple(sorted({int(p) for p in text.replace(" ", "").split(",") if p}))
    if not values or any(p < 1 or p > 1000 for p in values):
        raise ValueError(f"alert thresholds must be whole percents from 1 to 1000, got {text!r}")
    return values
