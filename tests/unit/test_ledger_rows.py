"""The ledger sends its columns as space-separated strings: no job's identifier can hold a space, and every column
splits back into exactly the values of the batch, its times to the microsecond and its ids as `fact_id` gives them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from events.envelope import Envelope, EnvelopeWriter, Event, fact_id
from events.jobs import JobCompleted, JobsCompleted, job_fact_hex
from events.registry import REGISTRY
from projections.columns import EPOCH, MICROSECOND, micros
from projections.ledger.projection import job_rows
from projections.records import Recorded

VALID = {"account_id": "acme", "api": "extract", "job_id": "j-1", "channel": "direct", "mode": "sync",
         "completed_at": "2026-11-01T00:00:00Z"}
TEXT_FIELDS = ("account_id", "api", "job_id", "channel", "mode")
with_whitespace = st.tuples(st.text(max_size=5), st.sampled_from(" \t\n\u00a0"), st.text(max_size=5)).map("".join)


@given(st.sampled_from(TEXT_FIELDS), with_whitespace)
def test_no_text_column_of_a_job_can_hold_whitespace(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        JobCompleted.model_validate({**VALID, field: value})


identifier = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,20}\Z")
zones = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones)
jobs = st.lists(
    st.builds(
        JobCompleted, account_id=identifier, job_id=identifier, api=st.from_regex(r"\A[a-z][a-z0-9_-]{0,10}\Z"),
        channel=st.sampled_from(["direct", "rapidapi"]), mode=st.sampled_from(["sync", "async"]),
        completed_at=moments,
    ),
    min_size=1, max_size=30,
)


def as_times(column: str) -> list[datetime]:
    """What Postgres makes of a `micros` column: `timestamptz 'epoch' + us * interval '1 microsecond'`."""
    return [EPOCH + int(us) * MICROSECOND for us in column.split(" ")]


@given(jobs, moments, st.booleans())
def test_each_column_splits_back_into_the_batch(batch: list[JobCompleted], logged: datetime, alone: bool) -> None:
    # Alone: each job in an envelope of its own, with the producer's id; else all in one JobsCompleted record.
    writer = EnvelopeWriter(producer="test", occurred_at=logged)
    if alone:
        read = [REGISTRY.decode(writer.encode(job, uuid.uuid4())) for job in batch]
    else:
        batch = [job.model_copy(update={"account_id": batch[0].account_id}) for job in batch]
        together = JobsCompleted(account_id=batch[0].account_id, jobs=tuple(batch))
        envelope, event = REGISTRY.decode(writer.encode(together, together.natural_id()))
        read = [(envelope, job) for job in event.facts()]
    items: list[Recorded[Event]] = [Recorded("t", 0, i, logged, envelope, job)
                                    for i, (envelope, job) in enumerate(read)]
    columns = job_rows(items)
    for position, field in zip(range(5), ("api", "job_id", "account_id", "channel", "mode"), strict=True):
        assert columns[position].split(" ") == [getattr(job, field) for job in batch]
    assert as_times(columns[5]) == [job.completed_at for job in batch]
    assert as_times(columns[6]) == [logged] * len(batch)
    assert [uuid.UUID(h) for h in columns[7].split(" ")] == [fact_id(item.envelope, item.event) for item in items]


@given(st.lists(moments, max_size=20))
def test_micros_gives_each_time_to_the_microsecond(times: list[datetime]) -> None:
    assert (as_times(micros(times)) if times else []) == times
    assert micros(times[:1] * 3) == " ".join([micros(times[:1])] * 3) if times else micros([]) == ""


def as_parsed(zone: tzinfo) -> tzinfo:
    """The zone object pydantic gives a time read from the log with that offset."""
    parsed = TypeAdapter(datetime).validate_json(f'"{datetime(2026, 1, 1, tzinfo=zone).isoformat()}"').tzinfo
    assert parsed is not None
    return parsed


any_zone: st.SearchStrategy[tzinfo] = st.one_of(zones, zones.map(as_parsed), st.timezones(), st.just(UTC))


@given(st.lists(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=any_zone),
                max_size=20))
def test_micros_is_exact_whatever_zone_objects_the_times_carry(times: list[datetime]) -> None:
    """Fixed offsets (the standard library's, pydantic's) go the quick way, others (with daylight saving) the general
    one; alternating between them changes nothing."""
    assert micros(times) == " ".join(str((t - EPOCH) // MICROSECOND) for t in times)


def test_a_jobs_hex_id_is_its_fact_id() -> None:
    job = JobCompleted.model_validate(VALID)
    mine = uuid.uuid4()
    lone = Envelope.wrap(job, producer="kcat", event_id=mine)
    batch = JobsCompleted(account_id="acme", jobs=(job,))
    carried = Envelope.wrap(batch, producer="ingest", event_id=batch.natural_id())
    assert job_fact_hex(lone, job) == mine.hex
    assert job_fact_hex(carried, job) == fact_id(carried, job).hex == job.natural_id().hex
