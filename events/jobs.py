"""Job facts: the billable unit (alone, or a batch of one account's), and the legacy operation events the normaliser
turns into it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from itertools import chain
from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field, model_validator

from events.envelope import (
    Envelope,
    EnvelopeWriter,
    Event,
    natural_event_id,
    natural_event_id_hex,
    natural_event_id_text,
)
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


class JobsCompleted(Event):
    """Jobs of one account in one record: how ingest publishes a request's jobs, one record per account.

    Read as its jobs, each exactly as if it had come in a `JobCompleted` of its own (`facts`): a job's identity
    stays (api, job_id) whatever carried it, so a job published alone and again in a batch counts once. Why a
    batch: every consumer pays per record to fetch, unpack and decode it, and each reads every job (issue 18).
    The jobs keep their own `account_id`, so each is a whole `JobCompleted`; it must be the batch's, the record's
    key, or the record is not read (dead-lettered whole, with the reason).
    """

    event_type: ClassVar[str] = "JobsCompleted"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = "jobs"

    account_id: AccountId
    jobs: tuple[JobCompleted, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_account(self) -> JobsCompleted:
        for n, job in enumerate(self.jobs):
            if job.account_id != self.account_id:
                raise ValueError(f"jobs.{n}.account_id {job.account_id!r} is not the batch's {self.account_id!r}")
        return self

    def facts(self) -> Sequence[Event]:
        return self.jobs

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("jobs", *job_keys(self.jobs))


def jobs_completed_wire(writer: EnvelopeWriter, account_id: str, jobs: Sequence[JobCompleted]) -> bytes:
    """The record of `JobsCompleted(account_id=..., jobs=...)` under its natural id, byte for byte as `writer.encode`
    writes it, without building the model: ingest makes one a request and account, and the model cost more than
    the jobs' own serialising where a record holds a job or two (timeit). The jobs must be valid and the account's."""
    to_json = JobCompleted.__pydantic_serializer__.to_json
    data = b'{"account_id":%s,"jobs":[%s]}' % (json.dumps(account_id).encode(), b",".join(map(to_json, jobs)))
    return writer.encode_data(JobsCompleted, data, jobs_event_id_text(jobs))


def jobs_event_id_text(jobs: Sequence[JobCompleted]) -> str:
    """`str(JobsCompleted(...).natural_id())` without the model: the same jobs published again share the id."""
    return natural_event_id_text("jobs", *job_keys(jobs))


def job_keys(jobs: Sequence[JobCompleted]) -> chain[str]:
    return chain.from_iterable((job.api, job.job_id) for job in jobs)


# Where the envelope's type starts in a record EnvelopeWriter wrote: after `{"event_id":"` and the id's 36 characters.
_TYPE_AT = len(b'{"event_id":"') + 36
_CURRENT_JOB_HEADS = tuple(b'","type":"%s","version":%d,' % (kind.event_type.encode(), kind.version)
                           for kind in (JobCompleted, JobsCompleted))
_DATA_ACCOUNT = b'"data":{"account_id":"'


def holds_no_job_of(value: bytes, channel: Channel) -> bool:
    """True only when the record is certainly a current `JobCompleted` or `JobsCompleted` none of whose jobs is on
    `channel`, told from its bytes without decoding them: a consumer that applies the jobs of one channel skips it.

    Certain, because: the type and version sit where EnvelopeWriter puts them (a record laid out otherwise, of an
    older or newer version, is decoded as before, and held or upcast there); with no backslash in it, no JSON
    string in it is escaped, so a job on `channel` would show the channel's name between quotes. A false answer
    says nothing: the record is decoded and its jobs filtered as before.
    """
    return _plain_current_jobs(value) and b'"%s"' % channel.encode() not in value


def jobs_account(value: bytes) -> str | None:
    """The account whose jobs a current `JobCompleted` or `JobsCompleted` holds, told from its bytes where certain
    (None otherwise): a consumer that bills one billing model's accounts skips those it knows are billed by another.

    Certain as `holds_no_job_of` is (EnvelopeWriter's layout, no escape in it, so every quote is JSON's own), and
    because the record has one `data` key, whose object starts with the `account_id` of both types (the one every
    job of a `JobsCompleted` must share, or the record is invalid: decoded, it is dead-lettered by the consumers
    that read every job). A record laid out otherwise is decoded as before.
    """
    if not _plain_current_jobs(value) or value.count(b'"data":') != 1:
        return None
    start = value.find(_DATA_ACCOUNT)
    if start < 0:
        return None
    start += len(_DATA_ACCOUNT)
    end = value.find(b'"', start)
    return value[start:end].decode() if end > start else None


def _plain_current_jobs(value: bytes) -> bool:
    return (value.startswith(_CURRENT_JOB_HEADS, _TYPE_AT) and value.startswith(b'{"event_id":"')
            and b"\\" not in value)


def job_event_id(api: str, job_id: str) -> uuid.UUID:
    """A job is identified by (api, job_id): every publication of it carries this one event id."""
    return natural_event_id("job", api, job_id)


def job_fact_hex(envelope: Envelope, job: JobCompleted) -> str:
    """`fact_id(envelope, job).hex`, made without a UUID object (`natural_event_id_hex`)."""
    if envelope.type == JobCompleted.event_type:
        return envelope.event_id.hex
    return natural_event_id_hex("job", job.api, job.job_id)


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
