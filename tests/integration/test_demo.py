"""The demo's workload on the real stack, smaller: every scenario's check passes, and the ledger holds exactly
the distinct jobs the gateway completed."""

from __future__ import annotations

import pytest

from jobmeter.settings import Settings
from services.devtools.demo import demo_engine, overrides, run_workload

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)
async def test_every_scenario_of_the_demo_passes(settings: Settings) -> None:
    async with demo_engine(settings.model_copy(update=overrides())) as engine:
        result = await run_workload(engine, accounts=12)
    failed = [f"{c.name}: {c.detail}" for c in result.checks if not c.passed]
    assert not failed, failed
    assert {c.name for c in result.checks} == {
        "traffic through the gateway", "upgrade mid-period", "PAYG recharge", "payment failure and recovery",
        "ledger exactly once", "RapidAPI reconciliation", "channels match the ledger",
    }
    assert result.ledger_total == len(result.completed) > 0
    assert {a.model for a in result.channels} == {"subscription", "payg", "rapidapi"}
