"""Admission's rule: refuse only on a fresh reading that shows a consumer past the bound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.ledger.admission import Admission, Reading, refusal

NOW = 1000.0


def test_a_consumer_past_the_bound_is_named_with_its_lag() -> None:
    reading = Reading({"ledger": 5, "caps": 1200, "payg": 900}, at=NOW)
    assert refusal(reading, 1000, NOW, 5) == "the caps consumer has 1200 jobs left to fold (bound 1000); retry later"


def test_at_the_bound_ingest_still_takes_jobs() -> None:
    assert refusal(Reading({"caps": 1000}, at=NOW), 1000, NOW, 5) is None


def test_off_unread_or_stale_admits_everything() -> None:
    far_behind = Reading({"caps": 10**9}, at=NOW)
    assert refusal(far_behind, 0, NOW, 5) is None  # admission off
    assert refusal(None, 1000, NOW, 5) is None  # nothing read yet
    assert refusal(far_behind, 1000, NOW + 5.01, 5) is None  # the watch stopped reading
    assert refusal(far_behind, 1000, NOW + 5, 5) is not None


@given(st.dictionaries(st.sampled_from(["ledger", "caps", "meter", "payg", "rapidapi"]), st.integers(0, 10**6)),
       st.integers(0, 10**6), st.floats(0, 100))
def test_refuses_exactly_when_a_fresh_reading_is_past_a_set_bound(behind: dict[str, int], bound: int,
                                                                     age: float) -> None:
    why = refusal(Reading(behind, at=NOW), bound, NOW + age, 10)
    expected = bound > 0 and age <= 10 and any(n > bound for n in behind.values())
    assert (why is not None) == expected
    if why is not None:
        worst = max(behind.values())
        assert f"has {worst} jobs" in why


def test_retry_after_is_a_whole_second_at_least() -> None:
    assert Admission(10, 0.1).retry_after == 1
    assert Admission(10, 2.5).retry_after == 3
