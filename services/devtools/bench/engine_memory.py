"""Whether an engine process's memory stays flat over a step of `jobmeter bench engine`: from RSS sampled through
the step, the RSS when the steady part starts and at the end, and the growth per minute and per million jobs.

The growth is the least-squares slope over the steady part rather than end minus start: RSS moves by a few MB as
the allocator and the garbage collector come and go, and two single samples would read that as a trend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SETTLE_SHARE = 0.2  # the first fifth of a step is start-up (pools fill, caches warm, batches grow): not steady


@dataclass(frozen=True)
class MemoryTrend:
    start_mb: float  # RSS at the first sample of the steady part
    end_mb: float  # RSS at the last sample
    per_minute_mb: float  # slope over the steady part
    per_million_jobs_mb: float | None  # the same slope per job taken; None when no job was taken
    steady_seconds: float
    samples: int
    by_minute: tuple[float, ...] = ()  # RSS at the first sample of each whole minute of the step, its shape

    def as_json(self) -> dict[str, Any]:
        per_million = self.per_million_jobs_mb
        return {"start_mb": round(self.start_mb, 1), "end_mb": round(self.end_mb, 1),
                "growth_mb_per_minute": round(self.per_minute_mb, 2),
                "growth_mb_per_million_jobs": None if per_million is None else round(per_million, 2),
                "steady_seconds": round(self.steady_seconds, 1), "samples": self.samples,
                "rss_mb_by_minute": [round(mb) for mb in self.by_minute]}


def memory_trend(samples: Sequence[tuple[float, float]], jobs_per_second: float, *,
                 settle_share: float = SETTLE_SHARE) -> MemoryTrend | None:
    """`samples` are (seconds, RSS MB) in time order; `jobs_per_second` the rate taken over the step. None with
    fewer than three samples in the steady part (no slope to speak of)."""
    if not samples:
        return None
    first, last = samples[0][0], samples[-1][0]
    steady = [(t, mb) for t, mb in samples if t >= first + settle_share * (last - first)]
    if len(steady) < 3:
        return None
    n = len(steady)
    mean_t = sum(t for t, _ in steady) / n
    mean_mb = sum(mb for _, mb in steady) / n
    spread = sum((t - mean_t) ** 2 for t, _ in steady)
    if spread == 0:
        return None
    per_second = sum((t - mean_t) * (mb - mean_mb) for t, mb in steady) / spread
    per_million = per_second / jobs_per_second * 1_000_000 if jobs_per_second > 0 else None
    minutes: dict[int, float] = {}
    for t, mb in samples:
        minutes.setdefault(int((t - first) // 60), mb)
    return MemoryTrend(steady[0][1], steady[-1][1], per_second * 60, per_million, steady[-1][0] - steady[0][0], n,
                       tuple(minutes.values()))
