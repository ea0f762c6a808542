"""Usage caps: an account's limits on jobs per billing period, set and cleared by operators (or the account).

They travel on the accounts topic, beside the other facts about how an account is served, keyed by account, so
an account's caps are applied in the order they were set: the latest for a scope wins. A scope is the account's
jobs on every API surface (`api` null) or on one surface.
"""

from __future__ import annotations

import uuid
from typing import Annotated, ClassVar

from pydantic import AwareDatetime, Field

from events.envelope import Event, natural_event_id
from events.types import AccountId, ApiName

Jobs = Annotated[int, Field(ge=1, le=1_000_000_000)]
Minor = Annotated[int, Field(ge=1, le=10**13)]


class CapSet(Event):
    """The account may run `jobs` jobs (on `api`, or on all) per billing period. A hard cap stops its keys once
    reached, until the period ends or the cap is raised; a soft cap only alerts. `spend_minor` caps what the
    period's jobs cost, in minor units, the same way: the overage past the plan's included jobs for an account on
    a live subscription, the PAYG prices for any other. A hard cap on one surface stops the keys on that surface
    only (KeySuspended's `scope`)."""

    event_type: ClassVar[str] = "CapSet"
    topic: ClassVar[str] = "accounts"

    account_id: AccountId
    api: ApiName | None = Field(default=None, description="the API surface the cap counts; null: all of them")
    jobs: Jobs
    hard: bool = True
    spend_minor: Minor | None = Field(default=None, description="a spend cap too, in minor units")
    set_at: AwareDatetime


class CapCleared(Event):
    event_type: ClassVar[str] = "CapCleared"
    topic: ClassVar[str] = "accounts"

    account_id: AccountId
    api: ApiName | None = None
    cleared_at: AwareDatetime


class CapPeriodEnded(Event):
    """The clock's word that an account's capped period is over (no job says so): the fold moves the account
    to the next period, and a hold on the old one is released. Published again, it is the same event."""

    event_type: ClassVar[str] = "CapPeriodEnded"
    topic: ClassVar[str] = "accounts"

    account_id: AccountId
    period_start: AwareDatetime
    period_end: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("cap-period-ended", self.account_id, self.period_start.isoformat())
