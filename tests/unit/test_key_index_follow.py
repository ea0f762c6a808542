"""The key index's bookkeeping of where it reads each partition and when it has caught up (services/keys/follow)."""

from __future__ import annotations

from services.keys.follow import Progress

K0, K1, A0 = ("keys", 0), ("keys", 1), ("accounts", 0)


def test_each_partition_starts_at_its_recorded_position_and_one_without_at_zero() -> None:
    progress = Progress.starting([K1, K0, A0], {K0: 7, A0: 3, ("other", 0): 99})
    assert progress.next == {A0: 3, K0: 7, K1: 0}


def test_caught_up_once_every_partition_reached_the_end_it_had_at_start() -> None:
    progress = Progress.starting([K0, K1, A0], {K0: 7, A0: 3})
    progress.aim({K0: 10, K1: 2, A0: 3})  # the accounts partition is at its end already
    assert progress.targets == {K0: 10, K1: 2}
    assert not progress.caught_up
    progress.took(K0, [7, 8, 9])
    assert progress.next[K0] == 10 and not progress.caught_up
    progress.took(K1, [0])
    assert not progress.caught_up, "one record short of the end is not caught up"
    progress.reached(K1, 2)  # the consumer's position: past an offset that held no record for us
    assert progress.caught_up


def test_nothing_past_the_snapshot_is_caught_up_at_once() -> None:
    progress = Progress.starting([K0, A0], {K0: 4, A0: 1})
    progress.aim({K0: 4, A0: 1})
    assert progress.caught_up


def test_records_handed_over_twice_never_move_a_partition_back() -> None:
    progress = Progress.starting([K0], {K0: 5})
    progress.took(K0, [5, 6])
    progress.took(K0, [5])
    progress.took(K0, [])
    assert progress.next[K0] == 7


def test_partitions_added_since_start_are_followed_from_zero() -> None:
    progress = Progress.starting([K0], {K0: 5})
    assert progress.add([K0, K1]) == [K1]
    assert progress.next == {K0: 5, K1: 0}
    assert progress.add([K0, K1]) == []
