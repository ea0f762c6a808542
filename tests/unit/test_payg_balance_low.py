"""The "balance below its threshold" rule as a table, and as a walk over a balance's life: one alert per crossing
from at-or-above to below, none while it stays below, re-armed only at or above, never with threshold 0."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from events.payg import BalanceLow
from projections.payg.rules import LowBalance, balance_low

T0 = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(("balance", "threshold", "was_low", "expected"), [
    (499, 500, False, LowBalance(low=True, alert=True)),  # crossing: from at or above to below
    (-30, 500, False, LowBalance(low=True, alert=True)),  # crossing well below zero at once: one alert all the same
    (400, 500, True, LowBalance(low=True, alert=False)),  # staying low: nothing more
    (500, 500, True, LowBalance(low=False, alert=False)),  # back at the threshold: re-armed, no alert
    (900, 500, True, LowBalance(low=False, alert=False)),  # back above (a top-up, a recharge): re-armed
    (500, 500, False, LowBalance(low=False, alert=False)),  # at the threshold is not below it
    (700, 500, False, LowBalance(low=False, alert=False)),  # above and armed: nothing
    (300, 500, False, LowBalance(low=True, alert=True)),  # crossing again once re-armed
    (300, 1000, False, LowBalance(low=True, alert=True)),  # the threshold raised above the balance is a crossing
    (-100, 0, False, LowBalance(low=False, alert=False)),  # threshold 0 (none configured): never an alert
    (-100, 0, True, LowBalance(low=True, alert=False)),  # ... and the flag stays as it was
])
def test_balance_low(balance: int, threshold: int, was_low: bool, expected: LowBalance) -> None:
    assert balance_low(balance, threshold, was_low) == expected


def alerts(balances: list[int], threshold: int = 500, low: bool = True) -> list[int]:
    """The balances, one per batch, at which an alert is raised; a balance opens low (never at its threshold)."""
    raised = []
    for balance in balances:
        verdict = balance_low(balance, threshold, low)
        low = verdict.low
        if verdict.alert:
            raised.append(balance)
    return raised


def test_a_balance_s_life_alerts_once_per_crossing() -> None:
    # Opens at 0 (low, never above: no alert), topped up, run down, stays low, topped up, run down again.
    assert alerts([0, -10, 1000, 600, 450, 300, -40, 200, 800, 500, 499, 100]) == [450, 499]
    assert alerts([0, 1000, 10], threshold=0) == []


def test_each_crossing_has_its_own_natural_id_and_a_refold_the_same() -> None:
    def event(crossing: int, balance: int = 400) -> BalanceLow:
        return BalanceLow(account_id="acme", balance_minor=balance, threshold_minor=500, currency="usd",
                          crossing=crossing, low_at=T0)

    assert event(1).natural_id() == event(1, balance=300).natural_id()
    assert event(1).natural_id() != event(2).natural_id()
    assert isinstance(event(1).natural_id(), uuid.UUID)
