"""Splitting a batch for side-by-side folds: whole partitions per group, every record once, log order kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from projections.fold import by_partition
from projections.records import RawRecord

partitions = st.lists(st.tuples(st.sampled_from(["jobs", "accounts"]), st.integers(0, 7)), max_size=60)


def batch_of(keys: list[tuple[str, int]]) -> list[RawRecord]:
    offsets: dict[tuple[str, int], int] = {}
    records = []
    for topic, partition in keys:
        offset = offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
        records.append(RawRecord(topic, partition, offset, 0, None, b"{}"))
    return records


@given(partitions, st.integers(1, 4))
def test_groups_hold_whole_partitions_in_log_order(keys: list[tuple[str, int]], groups: int) -> None:
    records = batch_of(keys)
    split = by_partition(records, groups)
    assert len(split) <= max(1, groups)
    assert sorted((r.topic, r.partition, r.offset) for g in split for r in g) == sorted(
        (r.topic, r.partition, r.offset) for r in records
    )
    owner: dict[tuple[str, int], int] = {}
    for i, group in enumerate(split):
        for r in group:
            assert owner.setdefault((r.topic, r.partition), i) == i  # a partition never spans two groups
        for key in {(r.topic, r.partition) for r in group}:
            offsets = [r.offset for r in group if (r.topic, r.partition) == key]
            assert offsets == sorted(offsets)
    if groups > 1:
        assert all(split)  # no empty transaction is opened


def test_groups_are_balanced_by_records() -> None:
    records = batch_of([("jobs", p) for p in (0, 0, 0, 0, 1, 1, 2, 2, 3, 3)])
    assert sorted(len(g) for g in by_partition(records, 2)) == [4, 6]
