"""The pure half of positions: which records of a batch are new, and how far a batch moves each partition."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.positions import Partition, Runs, gaps, next_offsets, partitioned, unread


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int


def recs(topic: str, partition: int, offsets: range) -> list[Rec]:
    return [Rec(topic, partition, o) for o in offsets]


def flat(runs: Runs[Rec]) -> list[Rec]:
    return [r for run in runs.values() for r in run]


def test_partitioned_keeps_each_partitions_records_in_the_order_given() -> None:
    # aiokafka hands a batch grouped by partition, but nothing here relies on it.
    batch = [Rec("jobs", 1, 9), Rec("jobs", 0, 4), Rec("jobs", 1, 7), Rec("keys", 0, 0), Rec("jobs", 0, 3)]
    assert partitioned(batch) == {("jobs", 1): [Rec("jobs", 1, 9), Rec("jobs", 1, 7)],
                                  ("jobs", 0): [Rec("jobs", 0, 4), Rec("jobs", 0, 3)], ("keys", 0): [Rec("keys", 0, 0)]}


def test_unread_keeps_records_at_or_past_the_stored_position() -> None:
    batch = recs("jobs", 0, range(3, 8)) + recs("jobs", 1, range(0, 2))
    fresh = unread(partitioned(batch), {("jobs", 0): 5, ("jobs", 1): 2})
    assert [(r.partition, r.offset) for r in flat(fresh)] == [(0, 5), (0, 6), (0, 7)]
    assert list(fresh) == [("jobs", 0)]  # a partition with nothing new is not there at all


def test_a_partition_never_seen_starts_at_zero() -> None:
    assert flat(unread(partitioned(recs("jobs", 2, range(0, 3))), {})) == recs("jobs", 2, range(0, 3))


def test_next_offsets_is_one_past_the_last_record_of_each_partition() -> None:
    batch = [Rec("jobs", 1, 9), Rec("jobs", 0, 4), Rec("jobs", 1, 7), Rec("keys", 0, 0)]
    assert next_offsets(partitioned(batch)) == {("jobs", 0): 5, ("jobs", 1): 10, ("keys", 0): 1}


def test_an_empty_batch_moves_nothing() -> None:
    assert next_offsets(partitioned([])) == {}
    assert unread(partitioned([]), {("jobs", 0): 3}) == {}


def test_a_batch_past_the_stored_position_is_taken_as_it_is() -> None:
    # Kafka offsets may have holes (transaction markers, compaction), so a gap is not an error here: keeping
    # the consumer from being sent past the stored position is the seek's job (services/platform/consumers.py).
    assert next_offsets(unread(partitioned(recs("jobs", 0, range(7, 9))), {("jobs", 0): 3})) == {("jobs", 0): 9}


def test_a_batch_that_starts_past_the_stored_position_is_a_gap_to_report() -> None:
    batch = recs("jobs", 0, range(7, 9)) + recs("jobs", 1, range(2, 4)) + recs("keys", 0, range(0, 2))
    stored = {("jobs", 0): 3, ("jobs", 1): 3}
    assert gaps(partitioned(batch), stored) == {("jobs", 0): (3, 7)}  # jobs/1 redelivered, keys/0 starts right
    assert gaps(partitioned(reversed(batch)), stored) == {("jobs", 0): (3, 7)}
    assert gaps(partitioned(recs("jobs", 2, range(5, 6))), {}) == {("jobs", 2): (0, 5)}  # a log that starts late


PARTITIONS: list[Partition] = [("jobs", 0), ("jobs", 1), ("keys", 0)]


def delivery(data: st.DataObject, stored: dict[Partition, int], rnd: random.Random) -> list[Rec]:
    """One batch as Kafka can deliver it: per partition a run of consecutive offsets starting anywhere from 0
    up to the stored position (a redelivery after a crash, a rebalance or a lagging Kafka commit), never past
    it; partitions interleaved in any order."""
    batch: list[Rec] = []
    for topic, number in data.draw(st.lists(st.sampled_from(PARTITIONS), min_size=1, max_size=3, unique=True)):
        start = data.draw(st.integers(0, stored.get((topic, number), 0)))
        batch += recs(topic, number, range(start, start + data.draw(st.integers(0, 12))))
    rnd.shuffle(batch)
    return batch


@settings(max_examples=300, deadline=None)
@given(st.data(), st.randoms(use_true_random=False))
def test_redeliveries_and_rollbacks_apply_every_offset_exactly_once(data: st.DataObject, rnd: random.Random) -> None:
    stored: dict[Partition, int] = {}  # the positions table
    applied: Counter[tuple[str, int, int]] = Counter()  # the projection's rows

    def fold(batch: list[Rec], commits: bool) -> None:
        fresh = unread(partitioned(batch), stored)
        if commits:  # otherwise the process died mid-transaction: rows and positions roll back together
            applied.update((r.topic, r.partition, r.offset) for r in flat(fresh))
            for partition, offset in next_offsets(fresh).items():  # positions.advance: GREATEST(stored, new)
                stored[partition] = max(stored.get(partition, 0), offset)

    delivered: set[tuple[str, int, int]] = set()
    for _ in range(data.draw(st.integers(1, 25))):
        batch = delivery(data, stored, rnd)
        delivered |= {(r.topic, r.partition, r.offset) for r in batch}
        fold(batch, commits=data.draw(st.booleans()))
    assert all(count == 1 for count in applied.values()), "an offset was applied twice"
    assert set(applied) == {(t, n, o) for (t, n), end in stored.items() for o in range(end)}, "an offset was skipped"

    # A restart seeks to the stored positions and reads on: whatever was delivered ends up applied once.
    for topic, number in PARTITIONS:
        end = max((o + 1 for t, n, o in delivered if (t, n) == (topic, number)), default=0)
        fold(recs(topic, number, range(stored.get((topic, number), 0), end)), commits=True)
    assert set(applied) == delivered
    assert all(count == 1 for count in applied.values())
