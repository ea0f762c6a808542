"""Counting a batch's jobs per period reuses the period of the account's job before when it holds the next one:
the counts must be exactly those of finding each job's period on its own."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.caps.rules import Grid, period_of, usage_counts

BASE = datetime(2026, 1, 31, 12, tzinfo=UTC)  # a month end: the grid's steps are short in February
moments = st.integers(min_value=-200, max_value=200).map(lambda d: BASE + timedelta(days=d / 2))
jobs = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["extract", "ocr"]), moments),
                max_size=60)
grids = st.fixed_dictionaries({}, optional={
    "a": st.builds(lambda s, n: Grid.of(BASE + timedelta(days=s), BASE + timedelta(days=s + n)),
                   st.integers(-40, 40), st.sampled_from([28, 31, 365])),
    "b": st.builds(lambda s: Grid.of(BASE + timedelta(days=s), BASE + timedelta(days=s + 30),
                                     anchor=BASE - timedelta(days=400)), st.integers(-40, 40)),
})


@settings(max_examples=300)
@given(jobs, grids)
def test_counts_are_those_of_each_job_on_its_own(batch: list[tuple[str, str, datetime]],
                                                  grid: dict[str, Grid]) -> None:
    one_by_one = Counter((account, period_of(at, grid.get(account)).start, api) for account, api, at in batch)
    assert usage_counts(batch, grid) == one_by_one


def test_jobs_either_side_of_a_month_end_count_in_their_own_months() -> None:
    end = datetime(2026, 3, 1, tzinfo=UTC)
    batch = [("a", "ocr", end - timedelta(seconds=1)), ("a", "ocr", end), ("a", "ocr", end - timedelta(days=1))]
    assert usage_counts(batch, {}) == {("a", datetime(2026, 2, 1, tzinfo=UTC), "ocr"): 2, ("a", end, "ocr"): 1}
