"""`jobmeter bench restart` runs end to end on the real stack in a short mode: two `run ledger` processes in one
group under load, the second SIGTERMed and started again as a static member; the figures say which partitions
each held and how long they stood still."""

from __future__ import annotations

import json

import pytest

from jobmeter.settings import Settings
from tests.integration.cli import run_cli

# The measure itself is unit-tested (tests/unit/test_bench_restart.py); this runs the whole command.
pytestmark = [pytest.mark.timeout(180), pytest.mark.soak]


async def test_the_restart_bench_measures_a_static_members_restart(settings: Settings) -> None:
    result = await run_cli(settings, "bench", "restart", "--membership", "static", "--rate", "200", "--warm", "1",
                           "--after", "0.5", "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["consumer"] == "ledger" and figures["rate"] == 200
    [run] = figures["runs"]
    assert run["membership"] == "static" and run["session_timeout_s"] == 45
    other, restarted = run["partitions"]["other"], run["partitions"]["restarted"]
    assert other and restarted and not set(other) & set(restarted)
    assert sorted(other + restarted) == list(range(len(other + restarted)))  # every partition, held by one of them
    # The restarted instance's partitions wait for it (a static member's are handed to no one): they stood still
    # while it was away, which is longer than no time at all.
    assert run["restarted_longest_gap_s"] > 0
    assert run["other_longest_gap_s"] >= 0 and run["before_restart_longest_gap_s"] >= 0 and run["stop_s"] > 0
