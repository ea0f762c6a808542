"""Usage alerts: an account's jobs in its billing period crossed a threshold of a limit, reached a cap, or are
forecast to exceed one.

Each fires once per (account, period, limit, threshold): the id is natural, so a replay or a restarted consumer
publishes the same event again, never a second one. They travel on the billing topic.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import ClassVar, Literal

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


class UsageForecastExceeded(Event):
    """The period's forecast (`projections/ledger/forecast.py`) runs past a limit the account has not reached yet:
    the jobs its plan includes, or its cap on all its jobs. Raised by the forecast watcher, once per (account,
    period, limit kind, scope)."""

    event_type: ClassVar[str] = "UsageForecastExceeded"
    topic: ClassVar[str] = "billing"

    account_id: AccountId
    period_start: AwareDatetime
    period_end: AwareDatetime
    limit_kind: Literal["cap", "included"]
    api: ApiName | None = Field(default=None, description="the API surface the limit counts; null: all")
    limit: int = Field(ge=1, description="the limit in jobs")
    jobs_to_date: int = Field(ge=0, description="jobs in the period when the forecast was made (under the limit)")
    forecast_jobs: int = Field(ge=0, description="the jobs the whole period is forecast to hold (over the limit)")
    forecast_high: int = Field(ge=0, description="the forecast interval's high end")
    reached_on: date | None = Field(default=None, description="the UTC day the limit is forecast to be reached")
    forecast_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("usage-forecast", self.account_id, self.period_start.isoformat(), self.limit_kind,
                                self.api or "*")
