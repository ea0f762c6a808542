"""The invariants a chaos run must end with, as pure checks over figures gathered afterwards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Invariant:
    name: str
    holds: bool
    figures: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"holds": self.holds, **self.figures}


def ledger_counts_each_acknowledged_job_once(acknowledged: int, ledger_jobs: int, ledger_total: int) -> Invariant:
    """Nothing lost (every 202'd job is counted), nothing twice (the hourly sums equal the distinct jobs)."""
    return Invariant(
        "ledger_exact",
        acknowledged == ledger_jobs == ledger_total,
        {"acknowledged_jobs": acknowledged, "ledger_distinct_jobs": ledger_jobs, "ledger_total": ledger_total},
    )


def refusals_accounted(bad_sent: int, refused_4xx: int, garbage_injected: int, dead_lettered: int) -> Invariant:
    """Every bad item was answered with a 4xx, and every unparseable record on the log was dead-lettered."""
    return Invariant(
        "refusals_accounted",
        bad_sent == refused_4xx and dead_lettered == garbage_injected,
        {"bad_items_sent": bad_sent, "refused_with_4xx": refused_4xx, "garbage_on_log": garbage_injected,
         "dead_lettered": dead_lettered},
    )


def lag_recovered(seconds: float | None, bound: float) -> Invariant:
    """After the last fault, every consumer catches up with the end of its topics within the bound."""
    return Invariant(
        "lag_recovered",
        seconds is not None and seconds <= bound,
        {"seconds_to_zero_lag": None if seconds is None else round(seconds, 2), "bound_seconds": bound},
    )
