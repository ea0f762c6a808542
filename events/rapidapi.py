"""RapidAPI marketplace facts: who a marketplace user is, what we declared to RapidAPI, what it reported back.

RapidAPI bills its users itself. These facts let us prove its numbers agree with ours: the identity of each
marketplace user (mapped to an account whose id is derived from the user, so every process derives the same
one), each job declared as a billing unit (at most once per job), each row of its usage export, and each
difference the reconciler found.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from events.envelope import Event, natural_event_id
from events.types import AccountId, ApiName, JobId, NonNegativeInt

# X-RapidAPI-User as RapidAPI sends it: a user name; printable, no control characters.
RapidApiUser = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
RapidApiPlan = Literal["BASIC", "PRO", "ULTRA", "MEGA", "CUSTOM"]
PLANS: tuple[str, ...] = ("BASIC", "PRO", "ULTRA", "MEGA", "CUSTOM")
# A billing object (custom quota) name: RapidAPI matches it exactly, so it is kept as given.
BillingObject = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9 _.-]+$")]
Period = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
DiscrepancyKind = Literal["unknown_user", "ledger_vs_declared", "declared_vs_reported", "ledger_vs_reported"]

ACCOUNT_PREFIX = "rapidapi:"
_PLAIN_USER = re.compile(r"^[A-Za-z0-9._@+=-]{1,100}$")
_NOT_ID = re.compile(r"[^A-Za-z0-9._@+=-]+")


def rapidapi_account_id(user: str) -> str:
    """The account of a marketplace user: `rapidapi:<user>`, the same in every process and on every replay.

    A user name that does not fit the AccountId pattern (spaces, other scripts, very long) keeps a readable
    part and gains a digest of the full name, so two different names never share an account.
    """
    if _PLAIN_USER.match(user):
        return f"{ACCOUNT_PREFIX}{user}"
    readable = _NOT_ID.sub("-", user).strip("-")[:80] or "user"
    digest = hashlib.sha256(user.encode()).hexdigest()[:16]
    return f"{ACCOUNT_PREFIX}{readable}.{digest}"


class MarketplaceUserLinked(Event):
    """A RapidAPI user was seen for the first time and given its account."""

    event_type: ClassVar[str] = "MarketplaceUserLinked"
    topic: ClassVar[str] = "rapidapi"

    rapidapi_user: RapidApiUser
    account_id: AccountId

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("rapidapi-user-linked", self.rapidapi_user)


class MarketplacePlanChanged(Event):
    """The plan in X-RapidAPI-Subscription differed from the last one seen for this user."""

    event_type: ClassVar[str] = "MarketplacePlanChanged"
    topic: ClassVar[str] = "rapidapi"

    rapidapi_user: RapidApiUser
    account_id: AccountId
    plan: RapidApiPlan
    seen_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("rapidapi-plan", self.rapidapi_user, self.plan, self.seen_at.isoformat())


class BillingUnitsDeclared(Event):
    """What RapidAPI was told in `X-RapidAPI-Billing` for one job: declared at most once per (api, job_id)."""

    event_type: ClassVar[str] = "BillingUnitsDeclared"
    topic: ClassVar[str] = "rapidapi"

    rapidapi_user: RapidApiUser
    account_id: AccountId
    api: ApiName
    job_id: JobId
    billing_object: BillingObject
    count: int = Field(ge=1)
    declared_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("rapidapi-declared", self.api, self.job_id)


class RapidApiUsageReported(Event):
    """One row of a RapidAPI usage export, as imported; its id is the file's digest and the row's line."""

    event_type: ClassVar[str] = "RapidApiUsageReported"
    topic: ClassVar[str] = "rapidapi"

    period: Period
    rapidapi_user: RapidApiUser
    subscription_owner_id: str | None = Field(default=None, max_length=200)
    api_name: str = Field(min_length=1, max_length=200)
    plan: str | None = Field(default=None, max_length=100)
    billing_object: BillingObject
    units: NonNegativeInt
    source_file: str = Field(min_length=1, max_length=255)
    source_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    line: int = Field(ge=1)

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("rapidapi-usage-row", self.source_digest, str(self.line))

    def partition_key(self) -> str:
        # The user's account, so a user's rows sit in the same order as its identity facts.
        return rapidapi_account_id(self.rapidapi_user)


class ReconciliationDiscrepancy(Event):
    """Ledger jobs, declared units and RapidAPI's reported units of one user and month disagree."""

    event_type: ClassVar[str] = "ReconciliationDiscrepancy"
    topic: ClassVar[str] = "rapidapi"

    period: Period
    rapidapi_user: RapidApiUser
    account_id: AccountId | None
    ledger_jobs: NonNegativeInt
    declared_units: NonNegativeInt
    reported_units: NonNegativeInt
    kind: DiscrepancyKind

    def natural_id(self) -> uuid.UUID:
        figures = f"{self.ledger_jobs}/{self.declared_units}/{self.reported_units}"
        return natural_event_id("rapidapi-discrepancy", self.period, self.rapidapi_user, self.kind, figures)

    def partition_key(self) -> str:
        return self.account_id or rapidapi_account_id(self.rapidapi_user)
