"""The restart bench's measure (services/devtools/bench/restart.py): how long a partition stood still while records
were waiting past it."""

from __future__ import annotations

import pytest

from services.devtools.bench.restart import Sample, longest_gaps, moved_since

P, Q = ("jobs", 0), ("jobs", 1)


def samples(*rows: tuple[float, int, int]) -> list[Sample]:
    """(time, position, end) of partition P."""
    return [Sample(at, {P: position}, {P: end}) for at, position, end in rows]


def test_a_partition_that_keeps_moving_has_no_gap_longer_than_a_sample() -> None:
    moving = samples((0.0, 0, 10), (0.1, 5, 12), (0.2, 9, 15), (0.3, 14, 18))
    assert longest_gaps(moving, [P]) == {P: 0.0}


def test_standing_still_with_records_waiting_is_a_gap_until_it_moves_again() -> None:
    stalled = samples((0.0, 5, 10), (0.5, 5, 12), (1.0, 5, 14), (1.5, 12, 16), (2.0, 12, 18), (2.5, 18, 18))
    assert longest_gaps(stalled, [P]) == {P: pytest.approx(1.0)}


def test_standing_still_with_nothing_waiting_is_no_gap() -> None:
    idle = samples((0.0, 5, 5), (1.0, 5, 5), (2.0, 5, 5), (2.5, 5, 7), (2.6, 7, 7))
    assert longest_gaps(idle, [P]) == {P: pytest.approx(0.5)}  # from the last idle look to the move


def test_only_gaps_seen_inside_the_window_count() -> None:
    rows = samples((0.0, 5, 10), (3.0, 5, 10), (3.1, 9, 12), (3.2, 9, 12), (3.3, 12, 12))
    assert longest_gaps(rows, [P], since=3.05) == {P: pytest.approx(0.1)}
    assert longest_gaps(rows, [P], until=3.05) == {P: pytest.approx(3.0)}


def test_a_partition_never_seen_has_no_gap_and_each_is_measured_apart() -> None:
    rows = [Sample(0.0, {P: 1, Q: 1}, {P: 5, Q: 5}), Sample(1.0, {P: 1, Q: 5}, {P: 5, Q: 5})]
    assert longest_gaps(rows, [P, Q, ("jobs", 2)]) == {P: 1.0, Q: 0.0, ("jobs", 2): 0.0}


def test_moved_since_asks_every_partition_to_move_after_the_moment() -> None:
    rows = [Sample(0.0, {P: 1, Q: 1}, {}), Sample(1.0, {P: 2, Q: 1}, {}), Sample(2.0, {P: 2, Q: 3}, {})]
    assert moved_since(rows, [P, Q], 0.5)
    assert not moved_since(rows, [P, Q], 1.5)  # P stood still after it
    assert moved_since(rows, [Q], 1.5)
