"""`jobmeter bench engine` runs end to end on the real stack: the engine comes up (`run all --one-process`, the
quickest to start; `test_run_all.py` covers the worker processes), takes a tiny steady load, and every sampled job is
found in the ledger, the meter's outbox and the PAYG balance."""

from __future__ import annotations

import pytest

from jobmeter.settings import Settings
from services.devtools.bench.engine import bench_engine
from services.devtools.bench.engine_figures import figure
from services.engine.runtime import PROJECTION_SERVICES

pytestmark = pytest.mark.timeout(300)


async def test_one_tiny_step_of_the_engine_is_measured_whole(stack: dict[str, str]) -> None:
    base = Settings(kafka_bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"], database_url=stack["DATABASE_URL"],
                    stripe_api_base=stack["STRIPE_API_BASE"])
    run = await bench_engine(base, "one-process", [200], 3, drain_seconds=90, log=lambda _: None)

    [step] = run.steps
    assert 0 < step.accepted == step.sent <= 600  # every job sent was taken, none twice
    assert step.refused == 0
    assert step.drained  # every consumer caught up and every sampled job arrived where it lands
    for target, latency in step.latency.items():
        assert latency.seconds and latency.missing == 0, target
        assert all(s >= 0 for s in latency.seconds)
    assert set(step.lag) == set(PROJECTION_SERVICES)
    # 20 jobs a request, round-robin over 50 accounts: a record each, read off the jobs topic's ends.
    assert step.records == step.accepted and step.jobs_per_record == 1
    assert run.as_json()["steps"][0]["records_appended"] == step.records
    assert "all" in step.processes  # the one engine process, measured
    assert all(p.peak_rss_mb > 0 for p in step.processes.values())
    assert step.processes["all"].cpu_percent > 0  # the ingest's and the folds' CPU is seen
    assert figure(run.steps) in (None, 200)
    assert run.as_json()["steps"][0]["latency_from_202"]["ledger"]["samples"] == len(step.latency["ledger"].seconds)
