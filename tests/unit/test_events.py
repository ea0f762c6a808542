"""The event contract: validation a person can act on, stable ids, versions by upcasting."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from events.codec import DecodeError, EventRegistry, encode
from events.envelope import Envelope, Event, encode_event
from events.jobs import JobCompleted, job_event_id
from events.registry import REGISTRY

JOB = {
    "account_id": "acme",
    "api": "extract",
    "job_id": "job-1",
    "channel": "direct",
    "mode": "sync",
    "completed_at": "2026-11-24T10:15:00+01:00",
}


def test_a_job_round_trips_through_the_envelope() -> None:
    job = JobCompleted.model_validate(JOB)
    envelope = Envelope.wrap(job, producer="test")
    decoded_envelope, decoded = REGISTRY.decode(encode(envelope))
    assert decoded == job
    assert decoded_envelope.event_id == job_event_id("extract", "job-1")
    assert decoded.completed_at.utcoffset() is not None


def test_the_same_job_always_has_the_same_event_id() -> None:
    a = Envelope.wrap(JobCompleted.model_validate(JOB), producer="a")
    b = Envelope.wrap(JobCompleted.model_validate({**JOB, "account_id": "other"}), producer="b")
    assert a.event_id == b.event_id
    assert a.event_id != Envelope.wrap(JobCompleted.model_validate({**JOB, "api": "classify"}), producer="a").event_id


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"completed_at": "2026-11-24T10:15:00"}, "completed_at", "timezone"),
        ({"channel": "email"}, "channel", "'direct' or 'rapidapi'"),
        ({"mode": "batch"}, "mode", "'sync' or 'async'"),
        ({"job_id": ""}, "job_id", "at least 1 character"),
        ({"account_id": "has space"}, "account_id", "pattern"),
        ({"extra": 1}, "extra", "Extra inputs are not permitted"),
        ({"job_id": 17}, "job_id", "valid string"),
    ],
)
def test_invalid_jobs_say_what_is_wrong(change: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JobCompleted.model_validate({**JOB, **change})
    (error,) = caught.value.errors()
    assert error["loc"] == (field,)
    assert words in error["msg"]


def test_a_job_on_any_api_surface_stays_readable() -> None:
    # Already in the log: a retired surface stays readable. Ingest checks the surface (tests/unit/test_ingest_apis.py).
    job = JobCompleted.model_validate({**JOB, "api": "retired"})
    assert REGISTRY.decode(encode(Envelope.wrap(job, producer="t")))[1] == job


def test_undecodable_bytes_give_a_reason() -> None:
    with pytest.raises(DecodeError, match="not an event envelope"):
        REGISTRY.decode(b"\xff\xfe")
    unknown = Envelope.wrap(JobCompleted.model_validate(JOB), producer="t").model_copy(update={"type": "Nope"})
    with pytest.raises(DecodeError, match="unknown event type 'Nope'"):
        REGISTRY.decode(encode(unknown))


class Renamed(Event):
    """A v2 that renamed a field: old payloads are upcast, never reinterpreted."""

    event_type: ClassVar[str] = "Renamed"
    version: ClassVar[int] = 2
    topic: ClassVar[str] = "jobs"
    account_id: str
    units: int


def test_old_versions_are_upcast_to_the_current_model() -> None:
    registry = EventRegistry([Renamed])

    @registry.upcaster("Renamed", from_version=1)
    def count_to_units(data: dict[str, Any]) -> dict[str, Any]:
        return {"account_id": data["account_id"], "units": data.pop("count")}

    old = Envelope(event_id=job_event_id("a", "b"), type="Renamed", version=1, occurred_at="2026-01-01T00:00:00Z",
                   producer="old", data={"account_id": "acme", "count": 3})
    assert registry.decode(encode(old))[1] == Renamed(account_id="acme", units=3)
    newer = old.model_copy(update={"version": 3})
    with pytest.raises(DecodeError, match="newer than this reader"):
        registry.decode(encode(newer))


def test_the_fast_wire_form_reads_back_like_the_envelope() -> None:
    job = JobCompleted.model_validate(JOB)
    at = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    fast = encode_event(job, producer="p", event_id=job.natural_id(), occurred_at=at)
    slow = encode(Envelope.wrap(job, producer="p", occurred_at=at))
    assert Envelope.model_validate_json(fast) == Envelope.model_validate_json(slow)
    envelope, event = REGISTRY.decode(fast)
    assert event == job and envelope.event_id == job.natural_id() and envelope.occurred_at == at
    assert envelope.type == "JobCompleted" and envelope.version == 1 and envelope.producer == "p"
