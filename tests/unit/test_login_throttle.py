"""Failed logins per client address (services.platform.rate_limit.BucketsByKey), on a fake clock: a burst, then
one more try each window / burst, and a bounded table however many addresses come."""

from __future__ import annotations

import pytest

from services.platform.rate_limit import BucketsByKey, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failures(clock: Clock, *, max_keys: int = 10_000) -> BucketsByKey:
    return BucketsByKey(5 / 60, burst=5, max_keys=max_keys, clock=clock)  # 5 failures a minute


def test_a_burst_of_failures_then_one_try_back_each_refill() -> None:
    clock = Clock()
    table = failures(clock)
    for _ in range(5):
        assert table.wait_time("1.2.3.4") == 0
        table.spend("1.2.3.4")
    assert table.wait_time("1.2.3.4") == pytest.approx(12)  # one try back after 60 s / 5
    clock.now += 11.5
    assert table.wait_time("1.2.3.4") == pytest.approx(0.5)
    clock.now += 0.5 + 1e-9  # (floating point: 60 / 5 of refill is a hair short of one token)
    assert table.wait_time("1.2.3.4") == 0
    table.spend("1.2.3.4")
    assert table.wait_time("1.2.3.4") == pytest.approx(12)
    clock.now += 60
    for _ in range(5):  # a quiet window gives the whole burst back, and no more
        assert table.wait_time("1.2.3.4") == 0
        table.spend("1.2.3.4")
    assert table.wait_time("1.2.3.4") > 0


def test_addresses_are_counted_apart_and_an_unknown_one_is_not_stored() -> None:
    table = failures(Clock())
    for _ in range(5):
        table.spend("1.2.3.4")
    assert table.wait_time("1.2.3.4") > 0
    assert table.wait_time("5.6.7.8") == 0
    assert len(table) == 1


def test_the_table_is_bounded_dropping_full_buckets_first_then_the_least_recently_used() -> None:
    clock = Clock()
    table = failures(clock, max_keys=3)
    for _ in range(6):
        table.spend("blocked")
    table.spend("a")
    table.spend("b")
    clock.now += 12  # "a" and "b" have their one failure back (full again); "blocked" is still waiting
    table.spend("c")
    assert (len(table), "a" in table, "b" in table) == (2, False, False)
    assert table.wait_time("blocked") == pytest.approx(12)  # remembered: full buckets went first
    table.spend("d")
    table.spend("e")  # nothing is full now: the least recently used goes
    assert ("blocked" in table, len(table)) == (False, 3)
    for n in range(10_000):
        table.spend(f"10.0.{n // 256}.{n % 256}")
    assert len(table) == 3


def test_spend_charges_without_waiting() -> None:
    clock = Clock()
    bucket = TokenBucket(1, burst=2, clock=clock)
    bucket.spend()
    bucket.spend()
    assert bucket.wait_time() == pytest.approx(1)
    bucket.spend()  # a cost after the fact may go below zero; it is paid back before the next token
    assert bucket.wait_time() == pytest.approx(2)
    assert not bucket.is_full()
    clock.now += 3
    assert bucket.is_full()
