"""The chaos run's wait for billing to settle: when each invariant held for good, so a run near its bound says
which part of billing it waited on."""

from __future__ import annotations

import time

from services.devtools.chaos.billing import hold_by
from services.devtools.chaos.invariants import Invariant


def checks(*rounds: dict[str, bool]) -> list[list[Invariant]]:
    return [[Invariant(name, holds, {}) for name, holds in r.items()] for r in rounds]


async def test_each_invariant_is_timed_from_when_it_last_stopped_failing() -> None:
    rounds = iter(checks({"meter": True, "recharges": False}, {"meter": False, "recharges": True},
                         {"meter": True, "recharges": True}))

    async def check() -> list[Invariant]:
        return next(rounds)

    held = await hold_by(time.monotonic() + 60, check)
    assert set(held) == {"meter", "recharges"}
    meter, recharges = held["meter"], held["recharges"]
    assert meter is not None and recharges is not None
    assert 1.5 < meter < 3 and 0.5 < recharges < 1.5  # the meter held again only at the third look


async def test_one_that_never_holds_by_the_deadline_is_none_and_the_wait_ends() -> None:
    async def check() -> list[Invariant]:
        return checks({"meter": True, "recharges": False})[0]

    held = await hold_by(time.monotonic() + 1.5, check)
    assert held["recharges"] is None and held["meter"] is not None and held["meter"] < 0.5
