"""The ledger sends its text columns as space-separated strings: no job's identifier can hold a space, and every
column splits back into exactly the values of the batch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from events.envelope import Envelope, Event
from events.jobs import JobCompleted
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
jobs = st.lists(
    st.builds(
        JobCompleted, account_id=identifier, job_id=identifier, api=st.from_regex(r"\A[a-z][a-z0-9_-]{0,10}\Z"),
        channel=st.sampled_from(["direct", "rapidapi"]), mode=st.sampled_from(["sync", "async"]),
        completed_at=st.just(datetime(2026, 11, 1, tzinfo=UTC)),
    ),
    min_size=1, max_size=30,
)


@given(jobs)
def test_each_text_column_splits_back_into_the_batch(batch: list[JobCompleted]) -> None:
    logged = datetime(2026, 11, 2, tzinfo=UTC)
    items: list[Recorded[Event]] = [
        Recorded("t", 0, i, logged, Envelope.wrap(job, producer="test"), job) for i, job in enumerate(batch)
    ]
    columns = job_rows(items)
    for position, field in zip(range(5), ("api", "job_id", "account_id", "channel", "mode"), strict=True):
        assert columns[position].split(" ") == [getattr(job, field) for job in batch]
    assert columns[5] == [job.completed_at for job in batch]
