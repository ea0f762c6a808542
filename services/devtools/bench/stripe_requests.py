"""`jobmeter bench stripe`: how many Stripe requests the meter reporter makes, and how fast, for a workload.

Nothing is sent. The jobs are put through the reporter's own window logic (`window_start`, the identifiers) to
count one meter event per customer and window, and the sends are scheduled as the sender does: each window
after it closes, at most `budget` requests a second (the token bucket). The peak rate is set beside Stripe's
documented live-mode limit for meter events (1,000 calls/s), and beside what the v2 meter event stream (100
events a request) would need.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from jobmeter.settings import get_settings
from projections.meter.windows import meter_event_identifier, window_start

STRIPE_METER_EVENTS_PER_SECOND = 1_000  # live mode, v1 meter events (Stripe docs)
V2_EVENTS_PER_REQUEST = 100


@dataclass(frozen=True)
class StripeBench:
    jobs: int
    customers: int
    duration_seconds: int
    window_seconds: int
    budget_per_second: float
    windows: int  # distinct window starts that had jobs
    requests: int  # v1 meter event calls: one per customer and window
    jobs_per_request: float
    largest_window_burst: int  # events due at one window close
    peak_requests_per_second: int  # the busiest second of the schedule
    drain_seconds: float  # how long the largest burst takes at the budget
    keeps_up: bool  # every window drained before the next closes
    stripe_limit_per_second: int
    v2_stream_requests: int  # the same events, 100 a request, per window

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def workload(
    jobs: int, customers: int, start: datetime, duration_seconds: int, seed: int = 7
) -> list[tuple[str, datetime]]:
    """Jobs spread uniformly at random over the customers and the duration (deterministic for a seed)."""
    rng = random.Random(seed)
    return [
        (f"cus_bench{rng.randrange(customers):05d}", start + timedelta(seconds=rng.random() * duration_seconds))
        for _ in range(jobs)
    ]


def schedule_peak(due: Counter[int], budget: float) -> int:
    """Sends per second when each window's events start at its close and drain at `budget` a second."""
    per_second: Counter[int] = Counter()
    backlog, second = 0.0, min(due) if due else 0
    last = max(due) if due else 0
    while second <= last or backlog > 0:
        backlog += due.get(second, 0)
        sent = min(backlog, budget)
        per_second[second] += math.floor(sent + 1e-9)
        backlog -= sent
        second += 1
    return max(per_second.values(), default=0)


def bench(
    jobs: int = 1_000_000, customers: int = 1_000, *, duration_seconds: int = 3_600, window_seconds: int = 60,
    lateness_seconds: float = 5.0, budget: float = 100.0, start: datetime | None = None,
) -> StripeBench:
    begin = start or datetime(2026, 11, 1, tzinfo=UTC)
    events: set[str] = set()
    per_window: Counter[datetime] = Counter()
    for customer, at in workload(jobs, customers, begin, duration_seconds):
        opened = window_start(at, window_seconds)
        identifier = meter_event_identifier(customer, opened, window_seconds, 0)
        if identifier not in events:
            events.add(identifier)
            per_window[opened] += 1
    due = Counter({int((w.timestamp() + window_seconds + lateness_seconds) // 1): n for w, n in per_window.items()})
    largest = max(per_window.values(), default=0)
    drain = largest / budget
    return StripeBench(
        jobs=jobs, customers=customers, duration_seconds=duration_seconds, window_seconds=window_seconds,
        budget_per_second=budget, windows=len(per_window), requests=len(events),
        jobs_per_request=round(jobs / max(1, len(events)), 1), largest_window_burst=largest,
        peak_requests_per_second=schedule_peak(due, budget), drain_seconds=round(drain, 2),
        keeps_up=drain < window_seconds, stripe_limit_per_second=STRIPE_METER_EVENTS_PER_SECOND,
        v2_stream_requests=sum(math.ceil(n / V2_EVENTS_PER_REQUEST) for n in per_window.values()),
    )


def describe(result: StripeBench) -> str:
    return (
        f"{result.jobs:,} jobs over {result.customers:,} customers in {result.duration_seconds:,} s, "
        f"{result.window_seconds} s windows: {result.requests:,} meter-event requests "
        f"({result.jobs_per_request} jobs each) in {result.windows} windows; the largest window closes with "
        f"{result.largest_window_burst:,} events, drained in {result.drain_seconds} s "
        f"at {result.budget_per_second:g}/s; "
        f"peak {result.peak_requests_per_second}/s against Stripe's documented {result.stripe_limit_per_second:,}/s "
        f"({'keeps up' if result.keeps_up else 'FALLS BEHIND'}); the v2 stream would need "
        f"{result.v2_stream_requests:,} requests."
    )


def command(
    jobs: Annotated[int, typer.Option(help="jobs in the workload")] = 1_000_000,
    customers: Annotated[int, typer.Option(help="Stripe customers they spread over")] = 1_000,
    duration: Annotated[int, typer.Option(help="seconds the jobs spread over")] = 3_600,
    window: Annotated[int | None, typer.Option(help="window width, s (default: JOBMETER_METER_WINDOW_SECONDS)")] = None,
    budget: Annotated[float | None, typer.Option(help="requests/s (default: the configured budget)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Count the Stripe requests the meter reporter makes for a workload, and its peak rate against Stripe's limit."""
    settings = get_settings()
    result = bench(
        jobs, customers, duration_seconds=duration, window_seconds=window or settings.jobmeter_meter_window_seconds,
        lateness_seconds=settings.jobmeter_meter_lateness_seconds,
        budget=budget or settings.jobmeter_stripe_requests_per_second,
    )
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print(describe(result))
