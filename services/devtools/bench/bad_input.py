"""`jobmeter bench bad-input`: does bad input slow the good traffic down? Good items/s through the real HTTP app
with clean batches, then with 10% of every batch refusable (the same good items, in number and shape), in one run
against one app. The target: the ratio of the two rates is at least 0.8."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from events.topics import Topics, ensure_topics
from jobmeter.settings import Settings
from services.devtools.bench.ingest import post_batches
from services.devtools.bench.rates import Rate, timed
from services.devtools.bench.workload import jobs
from services.devtools.chaos.workload import BAD_ITEMS
from services.devtools.sandbox import http_child, sandbox

TARGET = 0.8


def bodies(good: int, apis: tuple[str, ...], *, label: str, batch: int, bad_ratio: float, seed: int) -> list[bytes]:
    """`good` distinct good jobs in batches of `batch` good items each, with bad items mixed in so that they
    are `bad_ratio` of all items."""
    rng = random.Random(seed)  # a workload, not a secret
    items = [j.model_dump(mode="json") for j in jobs(good, apis, label=label, seed=seed)]
    out: list[bytes] = []
    for i in range(0, good, batch):
        chunk: list[dict[str, Any]] = items[i:i + batch]
        extra = round(len(chunk) * bad_ratio / (1 - bad_ratio))
        for n in range(extra):
            bad = {**rng.choice(chunk), "job_id": f"{label}-bad-{i}-{n}", **rng.choice(BAD_ITEMS)}
            chunk.insert(rng.randrange(len(chunk) + 1), bad)
        out.append(json.dumps(chunk).encode())
    return out


@dataclass(frozen=True)
class BadInputFigures:
    clean: Rate
    with_bad: Rate
    bad_ratio: float
    batch: int
    concurrency: int

    @property
    def ratio(self) -> float:
        return self.with_bad.per_second / self.clean.per_second if self.clean.per_second else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "good_items_per_s_clean": round(self.clean.per_second),
            "good_items_per_s_with_bad": round(self.with_bad.per_second),
            "ratio": round(self.ratio, 3), "holds": self.ratio >= TARGET,
            "target": f"with {self.bad_ratio:.0%} bad items, good throughput >= {TARGET} of clean",
            "clean": self.clean.as_json(), "with_bad": self.with_bad.as_json(),
            "batch_good_items": self.batch, "concurrency": self.concurrency,
        }


async def bench_bad_input(settings: Settings, good: int, *, batch: int = 500, concurrency: int = 4,
                          bad_ratio: float = 0.1, rounds: int = 2) -> BadInputFigures:
    """Clean and dirty runs alternate `rounds` times (so drift in the broker or disk hits both alike); the rates
    are over the totals."""
    async with sandbox(settings) as s:
        await ensure_topics(s.kafka_bootstrap_servers, Topics(s.jobmeter_topic_prefix), s.jobmeter_partitions)
        token = s.jobmeter_ingest_token.get_secret_value()
        async with http_child(s) as app:
            base = app.url
            await post_batches(base, token, bodies(200, s.jobmeter_apis, label="warm", batch=batch, bad_ratio=0,
                                               seed=1), concurrency)
            clean, dirty = Rate(0, 0.0), Rate(0, 0.0)
            for r in range(rounds):
                plain = bodies(good, s.jobmeter_apis, label=f"clean{r}", batch=batch, bad_ratio=0, seed=r)
                mixed = bodies(good, s.jobmeter_apis, label=f"mixed{r}", batch=batch, bad_ratio=bad_ratio, seed=r)
                a = await timed(post_batches(base, token, plain, concurrency))
                b = await timed(post_batches(base, token, mixed, concurrency))
                for rate in (a, b):
                    if rate.events != good:
                        raise RuntimeError(f"ingest accepted {rate.events} of {good} good items")
                clean = Rate(clean.events + a.events, clean.seconds + a.seconds)
                dirty = Rate(dirty.events + b.events, dirty.seconds + b.seconds)
    return BadInputFigures(clean, dirty, bad_ratio, batch, concurrency)
