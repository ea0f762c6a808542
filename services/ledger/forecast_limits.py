"""When a forecast is an alert: the limits an account's period is forecast to pass before it reached them. Pure.

The limits: the jobs its plan includes, its cap on all its jobs (its own, or the plan's default), each cap on one
API surface's jobs (that surface's own forecast, from its own days: one surface can grow while the others do not),
and each spend cap (all surfaces, or one): what the forecast jobs cost (`projections.ledger.forecast_terms.spend`,
the period's mix of surfaces so far kept) against the cap in minor units. A limit already reached has its own
alert (the caps fold's); a forecast resting on less than `MIN_HISTORY` of the period is too noisy to warn on (one
busy first hour would forecast a month of it), so none is raised before then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from events.usage import LimitKind, UsageForecastExceeded
from projections.caps.rules import ALL, Cap
from projections.ledger.forecast import forecast
from projections.ledger.forecast_terms import PayAsYouGo, Subscription, Terms, Unpriced, spend

MIN_HISTORY = timedelta(days=2)


def _share(total: int, part: int, whole: int) -> int:
    """`total` in the proportion `part / whole` (the surface's share of the jobs so far), rounded half up."""
    if whole <= 0:
        return 0
    return int((Decimal(total) * part / whole).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Passed:
    """A limit the forecast passes, in the terms of its alert."""

    kind: LimitKind
    api: str | None
    limit: int
    jobs_to_date: int
    forecast_jobs: int
    forecast_high: int
    reached_on: date | None = None
    spend: tuple[int, int, str | None] | None = None  # (so far, forecast, currency) of a spend cap


def forecast_alerts(
    account_id: str, start: datetime, end: datetime, document: dict[str, Any], cap: int | None, now: datetime, *,
    caps: Sequence[Cap] = (), daily_by_api: Mapping[str, Mapping[date, int]] | None = None,
    since: datetime | None = None, terms: Terms | None = None,
) -> list[UsageForecastExceeded]:
    """The limits this forecast (`document`, the answer of `jobmeter forecast`) passes before the account reached
    them. `cap`: the cap on all jobs; `caps`: the account's own caps (a surface's job caps and every spend cap are
    read from them); `daily_by_api`: the period's jobs per surface and day; `terms`: how its jobs are priced."""
    if now - start < MIN_HISTORY:
        return []
    days = daily_by_api or {}
    ordered = sorted(caps, key=lambda c: c.scope)
    passed = (_whole(document, cap) + _surfaces(start, end, now, ordered, days, since)
              + _spend(document, ordered, days, terms or Unpriced()))
    return [UsageForecastExceeded(
        account_id=account_id, period_start=start, period_end=end, limit_kind=p.kind, api=p.api, limit=p.limit,
        jobs_to_date=p.jobs_to_date, forecast_jobs=p.forecast_jobs, forecast_high=max(p.forecast_high, p.forecast_jobs),
        reached_on=p.reached_on, forecast_at=now, spend_to_date=p.spend[0] if p.spend else None,
        forecast_spend=p.spend[1] if p.spend else None, currency=p.spend[2] if p.spend else None,
    ) for p in passed]


def _whole(document: dict[str, Any], cap: int | None) -> list[Passed]:
    """The included jobs and the cap on all jobs, against the forecast of all the account's jobs."""
    jobs, total, high = int(document["jobs_to_date"]), int(document["forecast_jobs"]), int(document["forecast_high"])
    found = []
    included = document.get("included_jobs")
    if included and jobs < int(included) < total:
        found.append(Passed("included", None, int(included), jobs, total, high))
    if cap and jobs < cap < total:
        reached = document.get("cap_reached_on")
        found.append(Passed("cap", None, cap, jobs, total, high, date.fromisoformat(reached) if reached else None))
    return found


def _surfaces(start: datetime, end: datetime, now: datetime, caps: Sequence[Cap],
              days: Mapping[str, Mapping[date, int]], since: datetime | None) -> list[Passed]:
    """Each cap on one surface's jobs, against that surface's own forecast."""
    found = []
    for own in caps:
        if own.scope != ALL and own.jobs > 0:
            surface = forecast(start, end, now, days.get(own.scope, {}), own.jobs, since)
            if surface.jobs_to_date < own.jobs < surface.forecast_jobs:
                found.append(Passed("cap", own.scope, own.jobs, surface.jobs_to_date, surface.forecast_jobs,
                                    surface.forecast_high, surface.cap_reached_on))
    return found


def _spend(document: dict[str, Any], caps: Sequence[Cap], days: Mapping[str, Mapping[date, int]],
           terms: Terms) -> list[Passed]:
    """Each spend cap, against what the forecast jobs cost (of its surface, in the period's mix so far)."""
    jobs, total, high = int(document["jobs_to_date"]), int(document["forecast_jobs"]), int(document["forecast_high"])
    by_api = {api: sum(per_day.values()) for api, per_day in days.items()}
    currency = terms.currency if isinstance(terms, PayAsYouGo | Subscription) else None
    found = []
    for own in caps:
        if own.spend_minor is None:
            continue
        api = own.scope or None
        so_far, ahead = spend(terms, jobs, by_api, api), spend(terms, total, by_api, api)
        if so_far is None or ahead is None or not so_far < own.spend_minor < ahead:
            continue  # jobs not priced here (billed elsewhere), under the cap, or already past it
        part = by_api.get(own.scope, 0) if api else jobs
        # A surface's forecast jobs are its share of all of them, as its share of the spend is reckoned.
        ahead_jobs, top = (_share(total, part, jobs), _share(high, part, jobs)) if api else (total, high)
        found.append(Passed("spend_cap", api, own.spend_minor, part, ahead_jobs, top, None,
                            (so_far, ahead, currency)))
    return found
