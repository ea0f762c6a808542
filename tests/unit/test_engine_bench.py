"""The pure part of `jobmeter bench engine`: the offered bodies, the percentiles and which step is the figure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from services.devtools.bench.engine_figures import (
    REPORTED_WITHIN,
    TARGETS,
    Latency,
    StepResult,
    Target,
    figure,
    parse_modes,
    parse_steps,
    percentile,
    population,
    requests_for,
)
from services.ledger.ingest import split_batch

APIS = ("extract", "classify")


def test_bodies_are_valid_distinct_jobs_at_the_offered_count_with_a_sample_per_billing_model() -> None:
    accounts = population("t", subscription=3, payg=3, rapidapi=2)
    requests = requests_for(1000, 2, 500, accounts, APIS, label="u")
    assert sum(r.jobs for r in requests) == 2000
    assert all(r.jobs <= 100 for r in requests)  # ~10 requests a second at least, so the load is steady
    seen: set[tuple[str, str]] = set()
    for request in requests:
        items = json.loads(request.body)
        jobs, repeats, errors = split_batch(items, APIS, datetime.now(UTC))
        assert (len(jobs), repeats, errors) == (request.jobs, 0, [])
        seen |= {(j.api, j.job_id) for j in jobs}
        by_id = {j.job_id: j for j in jobs}
        assert sorted(s.target for s in request.samples) == ["ledger", "meter", "payg"]
        for sample in request.samples:
            job = by_id[sample.job_id]
            model = next(a.model for a in accounts if a.account_id == job.account_id)
            assert sample.target == {"subscription": "meter", "payg": "payg", "rapidapi": "ledger"}[model]
            assert job.channel == ("rapidapi" if model == "rapidapi" else "direct")
    assert len(seen) == 2000


def test_each_job_completed_shortly_before_its_request_is_due_never_after() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    rate, seconds = 1000, 30
    requests = requests_for(rate, seconds, 500, population("t"), APIS, label="w")
    after = datetime.now(UTC)
    sent, spread = 0, set()
    for request in requests:
        due = sent / rate  # `offer` sends a request once the jobs before it are due at the step's rate
        for item in json.loads(request.body):
            at = datetime.fromisoformat(item["completed_at"])
            assert before + timedelta(seconds=due - REPORTED_WITHIN - 1) <= at <= after + timedelta(seconds=due)
            spread.add(at)
        sent += request.jobs
    assert max(spread) - min(spread) >= timedelta(seconds=seconds - REPORTED_WITHIN - 1)  # they follow the step


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


def test_steps_and_modes_parse_or_say_what_is_wrong() -> None:
    assert parse_steps("2000, 5_000,10000") == [2000, 5000, 10000]
    assert parse_modes("both") == ["all", "split"]
    assert parse_modes("one-process,all") == ["one-process", "all"]
    for bad in ("", "0", "-5", "x"):
        with pytest.raises(ValueError):
            parse_steps(bad)
    with pytest.raises(ValueError):
        parse_modes("all,threads")


def step(offered: int, accepted: int, behind: int, *, drained: bool = True, records: int | None = None,
         ) -> StepResult:
    """A 10-second step; `records` appended to the jobs topic (one a job unless told), `behind` in records."""
    latency: dict[Target, Latency] = {t: Latency([0.1], 0) for t in TARGETS}
    return StepResult(offered, 10.0, accepted, accepted, 0, [0.05], {"ledger": 0, "meter": behind},
                      accepted if records is None else records, latency, {}, drained)


def test_the_figure_is_the_highest_step_of_an_unbroken_run_that_kept_up() -> None:
    kept = step(2000, 20_000, 3000)
    assert kept.keeps_up
    assert not step(2000, 18_000, 0).keeps_up  # ingest took under 95% of the offered rate
    assert not step(2000, 20_000, 4001).keeps_up  # a consumer ended more than 2 s of records behind
    assert not step(2000, 20_000, 0, drained=False).keeps_up
    assert figure([kept, step(5000, 50_000, 0), step(10_000, 60_000, 0), step(15_000, 150_000, 0)]) == 5000
    assert figure([step(2000, 10_000, 0)]) is None


def test_a_consumer_is_allowed_two_seconds_of_the_records_appended_not_of_the_jobs_offered() -> None:
    # 20,000 jobs in 2,000 records (10 a record) over 10 s: 200 records a second, so 400 records of lag allowed,
    # where 2 s of the offered 2,000 jobs/s (4,000) would have let a consumer ten times as far behind pass.
    assert step(2000, 20_000, 400, records=2000).keeps_up
    assert not step(2000, 20_000, 401, records=2000).keeps_up
    assert not step(2000, 20_000, 3000, records=2000).keeps_up
    assert step(2000, 20_000, 0, records=2000).allowed_behind == 400


def test_a_step_reports_its_jobs_per_record_and_the_furthest_behind_in_records_and_about_jobs() -> None:
    batched = step(2000, 20_000, 401, records=2000)
    assert batched.jobs_per_record == 10
    assert batched.most_behind == ("meter", 401)
    assert batched.about_jobs(401) == 4010
    figures = batched.as_json()
    assert figures["lag_at_end"] == {"ledger": 0, "meter": 401}  # in records, as read
    assert (figures["records_appended"], figures["jobs_per_record"], figures["keep_up_bound_records"]) == (
        2000, 10, 400)
    assert figures["most_behind"] == {"consumer": "meter", "records": 401, "jobs_about": 4010}
    nothing = step(2000, 0, 0, records=0)  # every request refused: no record, nothing to read a lag by
    assert nothing.jobs_per_record is None and nothing.about_jobs(5) is None
    assert nothing.as_json()["most_behind"] == {"consumer": "ledger", "records": 0, "jobs_about": None}
