"""A short chaos scenario on the real stack: every consumer, the HTTP app, Kafka, Postgres and stripe-mock are
killed or restarted under load, and Stripe answers 500 and then times out for a stretch each; the invariants must
hold afterwards: the ledger, the refusals, the lag, the billing channels (usage sent to Stripe meters = the ledger,
PAYG debits = jobs × price, no recharge charged twice, every recharge ended) and `jobmeter doctor` listing nothing
but the garbage the run put on the log on purpose.
`jobmeter chaos --minutes 10` is the long version (its last result is in the README)."""

from __future__ import annotations

import json

import pytest

from jobmeter.settings import Settings
from services.devtools.chaos.runner import Scenario

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)
async def test_invariants_hold_through_every_fault(settings: Settings) -> None:
    # The billing bound as in `jobmeter chaos`: PAYG accounts that ran into debt while Stripe failed climb back one
    # recharge at a time, each ~1 s, after the faults (9–46 s in fourteen runs on 2026-12-05; README).
    report = await Scenario(settings, seconds=30, accounts=20, lag_bound=60, billing_bound=90,
                            stripe_fault_seconds=10).run_scenario()
    print(json.dumps(report.as_json(), indent=2))
    assert {"restart kafka", "restart postgres", "stripe-mock down", "SIGKILL http", "SIGKILL ledger", "stripe 500s",
            "stripe timeouts"} <= set(report.faults)
    for invariant in report.invariants:
        assert invariant.holds, (invariant.name, invariant.figures)
    shown = report.as_json()
    assert shown["ledger_exact"]["acknowledged_jobs"] > 1000
    assert {"meter_equals_ledger", "meter_identifiers_distinct", "payg_debits_equal_jobs_times_price",
            "recharges_charged_once", "recharges_final", "doctor_empty"} <= set(shown)
    front = shown["stripe_front"]
    assert front["500"] > 0 and front["stall"] > 0, front  # Stripe failed while the services were talking to it
    assert shown["meter_equals_ledger"]["sent_value"] > 0 and shown["payg_debits_equal_jobs_times_price"]["jobs"] > 0
    assert shown["recharges_charged_once"]["by_state"].get("succeeded", 0) > 0  # recharges happened under faults
