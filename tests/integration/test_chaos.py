"""A short chaos scenario on the real stack: every consumer, the HTTP app, Kafka, Postgres and stripe-mock are
killed or restarted under load, and the invariants must hold afterwards. `jobmeter chaos --minutes 10` is
the long version (its last result is in the README)."""

from __future__ import annotations

import json

import pytest

from jobmeter.settings import Settings
from services.chaos.runner import Scenario

pytestmark = pytest.mark.integration


async def test_invariants_hold_through_every_fault(settings: Settings) -> None:
    report = await Scenario(settings, seconds=40, accounts=20, lag_bound=90).run_scenario()
    print(json.dumps(report.as_json(), indent=2))
    assert {"restart kafka", "restart postgres", "stripe-mock down", "SIGKILL http", "SIGKILL ledger"} <= set(
        report.faults
    )
    for invariant in report.invariants:
        assert invariant.holds, (invariant.name, invariant.figures)
    assert report.as_json()["ledger_exact"]["acknowledged_jobs"] > 1000
