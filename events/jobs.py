"""Job facts: the billable unit, and the legacy operation events the normaliser turns into it."""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from events.envelope import Event, natural_event_id, natural_event_id_text
from events.types import AccountId, ApiName, Channel, JobId, JobMode


class JobCompleted(Event):
    """One finished job on one API surface: one billable unit, whatever it processed.

    Also the shape of an item posted to `POST /v1/jobs/completed`. Ingest refuses a job on an API surface that is
    not configured; this model does not check it, so an event already in the log is a fact that stays readable if
    a surface is retired, and reading the log calls no validator of ours per job.
    """

    event_type: ClassVar[str] = "JobCompleted"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = "jobs"

    account_id: AccountId
    api: ApiName
    job_id: JobId
    channel: Channel
    mode: JobMode
    completed_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return job_event_id(self.api, self.job_id)


def job_event_id(api: str, job_id: str) -> uuid.UUID:
    """A job is identified by (api, job_id): every publication of it carries this one event id."""
    return natural_event_id("job", api, job_id)


def job_event_id_text(api: str, job_id: str) -> str:
    """`str(job_event_id(api, job_id))`, made without a UUID object: for ingest, which needs only the text."""
    return natural_event_id_text("job", api, job_id)


LegacyKind = Literal["pages_processed", "sync_call_finished", "async_job_submitted", "async_job_finished", "job_failed"]


class LegacyOperation(Event):
    """A raw operation event from the page-billed era, kept so history can be normalised to jobs."""

    event_type: ClassVar[str] = "LegacyOperation"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = "legacy"

    kind: LegacyKind
    account_id: AccountId
    api: ApiName
    job_id: JobId
    occurred_at: AwareDatetime
    pages: int = Field(default=0, ge=0)
    channel: Channel = "direct"
