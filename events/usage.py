"""Usage alerts: an account's jobs in its billing period crossed a threshold of a limit, reached a cap, or are
forecast to exceed one.

Each fires once per (account, period, limit, threshold): the id is natural, so a replay or a restarted consumer
publishes the same event again, never a second one. They travel on the billing topic.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, Field

from events.envelope import Event, natural_event_id
from events.types import AccountId, ApiName

LimitKind = Literal["cap", "spend_cap", "included"]


class UsageThresholdCrossed(Event):
    event_type: ClassVar[str] = "UsageThresholdCrossed"
    topic: ClassVar[str] = "billing"

    account_id: AccountId
    period_start: AwareDatetime
    period_end: AwareDatetime
    limit_kind: LimitKind = Field(description="what was crossed: a job cap, a spend cap, or the included jobs")
    api: ApiName | None = Field(default=None, description="the API surface the limit counts; null: all")
    threshold_percent: int = Field(ge=1, le=1000)
    limit: int = Field(ge=1, description="the limit: jobs, or minor units for a spend cap")
    used: int = Field(ge=0, description="jobs (or minor units) used in the period when it was crossed")
    crossed_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("usage-threshold", self.account_id, self.period_start.isoformat(), self.limit_kind,
                                self.api or "*", str(self.threshold_percent))


class UsageCapReached(Event):
    """A cap (hard: the keys stop; soft: only this alert) reached in the period."""

    event_type: ClassVar[str] = "UsageCapReached"
    topic: ClassVar[str] = "billing"

    account_id: AccountId
    period_start: AwareDatetime
    period_end: AwareDatetime
    limit_kind: Literal["cap", "spend_cap"]
    api: ApiName | None = None
    hard: bool
    limit: int = Field(ge=1)
    used: int = Field(ge=0)
    reached_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("usage-cap-reached", self.account_id, self.period_start.isoformat(), self.limit_kind,
                                self.api or "*")


def spend_of_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Upcast a v1 UsageForecastExceeded, from before spend caps were forecast: a job limit, no spend."""
    return {**data, "spend_to_date": None, "forecast_spend": None, "currency": None}


class UsageForecastExceeded(Event):
    """The period's forecast (`projections/ledger/forecast.py`) runs past a limit the account has not reached yet:
    the jobs its plan includes, a cap on its jobs (all of them, or one API surface's), or a spend cap (what the
    forecast jobs cost, `projections/ledger/forecast_terms.py`). Raised by the forecast watcher, once per (account,
    period, limit kind, scope). v2 added the spend (a spend cap's limit is in minor units, not jobs)."""

    event_type: ClassVar[str] = "UsageForecastExceeded"
    version: ClassVar[int] = 2
    topic: ClassVar[str] = "billing"

    account_id: AccountId
    period_start: AwareDatetime
    period_end: AwareDatetime
    limit_kind: LimitKind = Field(description="what is forecast to be passed: a job cap, a spend cap, or the "
                                              "included jobs")
    api: ApiName | None = Field(default=None, description="the API surface the limit counts; null: all")
    limit: int = Field(ge=1, description="the limit: jobs, or minor units for a spend cap")
    jobs_to_date: int = Field(ge=0, description="jobs in the period (of `api`, when given) when the forecast was made")
    forecast_jobs: int = Field(ge=0, description="the jobs the whole period (of `api`) is forecast to hold")
    forecast_high: int = Field(ge=0, description="the forecast interval's high end")
    reached_on: date | None = Field(default=None, description="the UTC day the limit is forecast to be reached")
    forecast_at: AwareDatetime
    spend_to_date: int | None = Field(default=None, ge=0,
                                      description="a spend cap's: what the period's jobs cost so far, minor units")
    forecast_spend: int | None = Field(default=None, ge=0,
                                       description="a spend cap's: what the forecast jobs cost, minor units")
    currency: str | None = Field(default=None, description="a spend cap's currency (ISO 4217, lower case)")

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("usage-forecast", self.account_id, self.period_start.isoformat(), self.limit_kind,
                                self.api or "*")
