"""Admission's rule: refuse only on a fresh reading that shows a consumer past the bound, in jobs: its records
behind at the jobs per record this process published since the previous reading."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.ledger.admission import Admission, JobsPerRecord, Published, Reading, refusal

NOW = 1000.0


def test_a_consumer_past_the_bound_is_named_with_its_lag() -> None:
    reading = Reading({"ledger": 5, "caps": 1200, "payg": 900}, 1.0, at=NOW)
    assert refusal(reading, 1000, NOW, 5) == (
        "the caps consumer has about 1200 jobs left to fold (1200 records of ~1 jobs; bound 1000); retry later")


def test_records_behind_count_as_the_jobs_they_hold() -> None:
    reading = Reading({"ledger": 1, "caps": 6}, 200.0, at=NOW)  # six records, of 200 jobs each
    assert reading.behind == {"ledger": 200, "caps": 1200}
    assert refusal(reading, 1000, NOW, 5) == (
        "the caps consumer has about 1200 jobs left to fold (6 records of ~200 jobs; bound 1000); retry later")
    assert refusal(Reading({"caps": 5}, 200.0, at=NOW), 1000, NOW, 5) is None  # 1000 jobs: at the bound
    odd = refusal(Reading({"caps": 1}, 2.5, at=NOW), 1, NOW, 5)
    assert odd is not None and "about 2 jobs left to fold (1 record of ~2.5 jobs" in odd


def test_jobs_per_record_is_the_last_intervals_else_the_previous_else_one() -> None:
    published, per_record = Published(), JobsPerRecord()
    assert per_record.update(published) == 1.0  # nothing ever published: a job a record
    published.add(20, 1)
    published.add(30, 4)
    assert per_record.update(published) == 10.0  # 50 jobs in 5 records since the previous reading
    assert per_record.update(published) == 10.0  # nothing since: the previous interval's
    published.add(3, 3)
    assert per_record.update(published) == 1.0  # only this interval's, not 53 in 8 since the start


def test_a_reading_is_converted_at_what_its_admission_published_since_the_previous() -> None:
    admission = Admission(10, 0.1, published=Published())
    assert admission.reading_of({"ledger": 3}, NOW).behind == {"ledger": 3}
    admission.published.add(40, 2)
    reading = admission.reading_of({"ledger": 3}, NOW + 0.1)
    assert (reading.jobs_per_record, reading.behind, reading.at) == (20.0, {"ledger": 60}, NOW + 0.1)
    assert admission.reading_of({"ledger": 1}, NOW + 0.2).behind == {"ledger": 20}
    later = Admission(10, 0.1, published=admission.published)  # what was published before it is not its own
    assert later.reading_of({"ledger": 3}, NOW).behind == {"ledger": 3}


def test_at_the_bound_ingest_still_takes_jobs() -> None:
    assert refusal(Reading({"caps": 1000}, 1.0, at=NOW), 1000, NOW, 5) is None


def test_off_unread_or_stale_admits_everything() -> None:
    far_behind = Reading({"caps": 10**9}, 1.0, at=NOW)
    assert refusal(far_behind, 0, NOW, 5) is None  # admission off
    assert refusal(None, 1000, NOW, 5) is None  # nothing read yet
    assert refusal(far_behind, 1000, NOW + 5.01, 5) is None  # the watch stopped reading
    assert refusal(far_behind, 1000, NOW + 5, 5) is not None


@given(st.dictionaries(st.sampled_from(["ledger", "caps", "meter", "payg", "rapidapi"]), st.integers(0, 10**6)),
       st.integers(1, 200), st.integers(0, 10**6), st.floats(0, 100))
def test_refuses_exactly_when_a_fresh_reading_is_past_a_set_bound_in_jobs(records: dict[str, int], per_record: int,
                                                                         bound: int, age: float) -> None:
    why = refusal(Reading(records, float(per_record), at=NOW), bound, NOW + age, 10)
    expected = bound > 0 and age <= 10 and any(n * per_record > bound for n in records.values())
    assert (why is not None) == expected
    if why is not None:
        worst = max(records.values())
        assert f"has about {worst * per_record} jobs" in why


def test_retry_after_is_a_whole_second_at_least() -> None:
    assert Admission(10, 0.1).retry_after == 1
    assert Admission(10, 2.5).retry_after == 3
