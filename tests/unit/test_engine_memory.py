"""The memory figures of `jobmeter bench engine`: RSS at the steady part's start and end, growth per minute and per
million jobs, read as a slope so a single spike is not a trend."""

from __future__ import annotations

import pytest

from services.devtools.bench.engine_memory import memory_trend


def test_flat_memory_with_noise_reads_as_no_growth() -> None:
    # ten minutes sampled every 0.5 s: start-up growth in the first minute, then flat with a sawtooth around 300 MB
    samples = [(t / 2, 200 + t / 2 if t < 120 else 300 + (5 if t % 7 == 0 else 0)) for t in range(1200)]
    trend = memory_trend(samples, jobs_per_second=3000)
    assert trend is not None
    assert trend.start_mb in (300, 305) and trend.end_mb in (300, 305)
    assert abs(trend.per_minute_mb) < 0.05
    assert trend.per_million_jobs_mb is not None and abs(trend.per_million_jobs_mb) < 0.3
    assert trend.steady_seconds == pytest.approx(0.8 * 599.5, abs=0.5)


def test_a_steady_leak_reads_as_its_rate_per_minute_and_per_million_jobs() -> None:
    # 2 MB a minute from the start: the start-up part is left out, the slope is the leak
    samples = [(float(t), 100 + 2 * t / 60) for t in range(600)]
    trend = memory_trend(samples, jobs_per_second=5000)
    assert trend is not None
    assert trend.per_minute_mb == pytest.approx(2.0)
    assert trend.per_million_jobs_mb == pytest.approx(2.0 / (5000 * 60) * 1_000_000)  # 6.67 MB per million jobs
    assert trend.start_mb == pytest.approx(100 + 2 * 120 / 60)
    assert trend.end_mb == pytest.approx(100 + 2 * 599 / 60)
    assert trend.by_minute == pytest.approx([100 + 2 * m for m in range(10)])  # the shape, minute by minute


def test_one_spike_at_the_end_is_not_read_as_growth() -> None:
    samples = [(float(t), 300.0) for t in range(600)] + [(600.0, 400.0)]
    trend = memory_trend(samples, jobs_per_second=1000)
    assert trend is not None and trend.end_mb == 400
    assert trend.per_minute_mb < 0.6  # end minus start over the steady 8 minutes would say 12.5 MB/min


def test_no_figure_without_enough_samples_and_none_per_job_without_jobs() -> None:
    assert memory_trend([], 1000) is None
    assert memory_trend([(0.0, 1.0), (1.0, 1.0)], 1000) is None
    trend = memory_trend([(float(t), 10.0 + t) for t in range(10)], 0)
    assert trend is not None and trend.per_million_jobs_mb is None and trend.per_minute_mb == pytest.approx(60)
