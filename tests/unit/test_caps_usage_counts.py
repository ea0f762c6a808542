"""Finding a batch's periods reuses the period of the account's job before when it holds the next one: the starts
must be exactly those of finding each job's period on its own, and none for an account being recounted. The
columns the fold sends split back into the values they were made of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.caps.rules import Grid, period_of, period_starts
from projections.caps.store import spaced

BASE = datetime(2026, 1, 31, 12, tzinfo=UTC)  # a month end: the grid's steps are short in February
moments = st.integers(min_value=-200, max_value=200).map(lambda d: BASE + timedelta(days=d / 2))
jobs = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), moments), max_size=60)
grids = st.fixed_dictionaries({}, optional={
    "a": st.builds(lambda s, n: Grid.of(BASE + timedelta(days=s), BASE + timedelta(days=s + n)),
                   st.integers(-40, 40), st.sampled_from([28, 31, 365])),
    "b": st.builds(lambda s: Grid.of(BASE + timedelta(days=s), BASE + timedelta(days=s + 30),
                                     anchor=BASE - timedelta(days=400)), st.integers(-40, 40)),
})


@settings(max_examples=300)
@given(jobs, grids, st.sets(st.sampled_from(["a", "b", "c"])))
def test_starts_are_those_of_each_job_on_its_own(batch: list[tuple[str, datetime]], grid: dict[str, Grid],
                                                 skip: set[str]) -> None:
    one_by_one = [None if account in skip else period_of(at, grid.get(account)).start for account, at in batch]
    assert period_starts(batch, grid, skip) == one_by_one


def test_jobs_either_side_of_a_month_end_count_in_their_own_months() -> None:
    end = datetime(2026, 3, 1, tzinfo=UTC)
    batch = [("a", end - timedelta(seconds=1)), ("a", end), ("a", end - timedelta(days=1))]
    assert period_starts(batch, {}) == [datetime(2026, 2, 1, tzinfo=UTC), end, datetime(2026, 2, 1, tzinfo=UTC)]


def test_a_column_of_ids_splits_back_into_the_same_values_or_fails() -> None:
    assert spaced(["extract", "j-1", "acme"]).split(" ") == ["extract", "j-1", "acme"]
    for bad in (["a b", "c"], ["", "c"], [""]):
        with pytest.raises(ValueError, match="empty or holds a space"):
            spaced(bad)
