"""The pure part of `jobmeter bench engine`: the offered workload (accounts, bodies, sampled jobs) and the figures
of a step (rates, latencies, who fell behind, which step is the engine's figure).

A consumer's lag is in records, not jobs: ingest publishes a request's jobs as one record per account, so a record
holds one job or many. A step's allowance is therefore in records too (what it appended to the jobs topic per
second), and its jobs per record turns a lag in records into about as many jobs."""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from services.devtools.bench.engine_machine import MachineFigures
from services.devtools.bench.engine_memory import MemoryTrend

Mode = Literal["all", "one-process", "split"]
MODES: tuple[Mode, ...] = ("all", "one-process", "split")
Target = Literal["ledger", "meter", "payg"]
TARGETS: tuple[Target, ...] = ("ledger", "meter", "payg")
DEFAULT_STEPS = (2000, 5000, 10_000, 15_000, 20_000, 30_000)
# A consumer keeps up when it ends a step at most this many seconds of the step's records behind (in records: the
# lag is counted in records, and a record carries one job or many).
KEEP_UP_SECONDS = 2.0
REPORTED_WITHIN = 2  # seconds from a job's completion to its request, at most (`requests_for`)
ACHIEVED_SHARE = 0.95  # ingest keeps up when it took at least this share of the offered rate


@dataclass(frozen=True)
class Account:
    account_id: str
    model: Literal["subscription", "payg", "rapidapi"]

    @property
    def channel(self) -> str:
        return "rapidapi" if self.model == "rapidapi" else "direct"

    @property
    def target(self) -> Target:
        """Where a job of this account ends up beside the ledger (RapidAPI jobs: the ledger's time stands in)."""
        return {"subscription": "meter", "payg": "payg", "rapidapi": "ledger"}[self.model]  # type: ignore[return-value]


def population(run: str, subscription: int = 20, payg: int = 20, rapidapi: int = 10) -> list[Account]:
    """A realistic mix: accounts billed through Stripe meters, pay-as-you-go and through the RapidAPI channel."""
    return ([Account(f"bench-{run}-s{i}", "subscription") for i in range(subscription)]
            + [Account(f"bench-{run}-p{i}", "payg") for i in range(payg)]
            + [Account(f"bench-{run}-r{i}", "rapidapi") for i in range(rapidapi)])


@dataclass(frozen=True)
class Sample:
    """A job whose arrival is looked for: in the ledger always, and in the meter's outbox or PAYG by its account."""

    api: str
    job_id: str
    target: Target


@dataclass(frozen=True)
class Request:
    body: bytes
    jobs: int
    samples: tuple[Sample, ...]


def requests_for(rate: int, seconds: float, batch: int, accounts: Sequence[Account], apis: Sequence[str], *,
                 label: str, seed: int = 7) -> list[Request]:
    """The step's bodies, encoded before its clock starts (the bench shares the cores with the engine). Jobs go
    round-robin over accounts and APIs; the first job of each billing model in a request is sampled. A job completed
    up to REPORTED_WITHIN seconds before its request's time on the schedule, as an API reports its jobs: never in the
    future of its request, and late for a meter window only near the window's end, as in use. (Stamps spread over
    the minute before the step made nearly every job of a long step late for its window: each of the meter's
    batches then opened a report that the sender sent to Stripe at once, a cost no real load has.)"""
    rng = random.Random(seed)
    total = max(1, round(rate * seconds))
    size = max(1, min(batch, rate // 10 or 1))  # at least ~10 requests a second, so the load is steady
    now = datetime.now(UTC)
    # stamps[k + REPORTED_WITHIN]: `now` + k seconds, for k from -REPORTED_WITHIN to the step's end
    stamps = [(now + timedelta(seconds=k)).strftime("%Y-%m-%dT%H:%M:%SZ")
              for k in range(-REPORTED_WITHIN, math.ceil(seconds) + 1)]
    out: list[Request] = []
    for start in range(0, total, size):
        items: list[str] = []
        samples: dict[str, Sample] = {}
        due = int(start / rate)  # whole seconds into the step at which `offer` sends this request, at the earliest
        choices = stamps[due : due + REPORTED_WITHIN + 1]
        for i in range(start, min(start + size, total)):
            account, api, job_id = accounts[i % len(accounts)], apis[i % len(apis)], f"{label}-{i:09d}"
            items.append(
                f'{{"account_id":"{account.account_id}","api":"{api}","job_id":"{job_id}",'
                f'"channel":"{account.channel}","mode":"{rng.choice(("sync", "async"))}",'
                f'"completed_at":"{rng.choice(choices)}"}}'
            )
            samples.setdefault(account.model, Sample(api, job_id, account.target))
        out.append(Request(f"[{','.join(items)}]".encode(), len(items), tuple(samples.values())))
    return out


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None when there is nothing to rank."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]


def parse_modes(text: str) -> list[Mode]:
    """`both` (all, then split) or a comma-separated list of modes, run in that order."""
    names = ["all", "split"] if text == "both" else [part.strip() for part in text.split(",") if part.strip()]
    modes = [m for name in names for m in MODES if m == name]
    if not modes or len(modes) != len(names):
        raise ValueError(f"modes are both, or a comma-separated list of: {', '.join(MODES)}; got {text!r}")
    return modes


def parse_steps(text: str) -> list[int]:
    steps = [int(part.replace("_", "").strip()) for part in text.split(",") if part.strip()]
    if not steps or any(s <= 0 for s in steps):
        raise ValueError(f"steps must be positive jobs/s, comma-separated: {text!r}")
    return steps


@dataclass(frozen=True)
class ProcessFigures:
    cpu_percent: float  # of one core, over the step
    peak_rss_mb: float  # sampled every PROBE_EVERY * 5 seconds
    pss: bool = False  # the memory figure is PSS (the stack's servers: Postgres's backends share their buffers)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cpu_percent": round(self.cpu_percent), "peak_rss_mb": round(self.peak_rss_mb)}
        if self.pss:
            out["memory"] = "pss"
        return out


@dataclass(frozen=True)
class Latency:
    seconds: list[float]
    missing: int  # sampled, never seen before the drain ended

    def as_json(self) -> dict[str, Any]:
        p50, p99 = percentile(self.seconds, 50), percentile(self.seconds, 99)
        return {"p50_s": None if p50 is None else round(p50, 3), "p99_s": None if p99 is None else round(p99, 3),
                "samples": len(self.seconds), "missing": self.missing}


@dataclass(frozen=True)
class StepResult:
    offered: int
    seconds: float  # from the first request to the last 202
    sent: int  # jobs in the requests sent within the step's time
    accepted: int
    refused: int  # requests answered 503 (Kafka or Postgres did not answer in time, or admission), not retried
    answers: list[float]  # seconds from each POST to its 202
    lag: dict[str, int]  # records each consumer had not folded when the last 202 came back
    records: int  # records the step appended to the jobs topic, from its first request to its last answer
    latency: dict[Target, Latency]
    processes: dict[str, ProcessFigures]
    drained: bool  # every consumer caught up and every sample was seen before the next step
    memory: dict[str, MemoryTrend] = field(default_factory=dict)  # RSS over the steady part, per process
    machine: MachineFigures | None = None  # the whole machine's CPU over the step, by whom

    @property
    def achieved(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    @property
    def jobs_per_record(self) -> float | None:
        """Jobs accepted per record appended: what a record of this step's lag stands for. None with no record."""
        return self.accepted / self.records if self.records else None

    @property
    def allowed_behind(self) -> float:
        """Records a consumer may end the step behind: KEEP_UP_SECONDS of the records the step appended."""
        return KEEP_UP_SECONDS * self.records / self.seconds if self.seconds else 0.0

    @property
    def most_behind(self) -> tuple[str, int] | None:
        """The consumer furthest behind at the step's end and its lag in records (the first by name on a tie)."""
        if not self.lag:
            return None
        worst = max(sorted(self.lag), key=self.lag.__getitem__)
        return worst, self.lag[worst]

    def about_jobs(self, records: int) -> int | None:
        """A lag in records as about how many jobs, at this step's jobs per record (records of a consumer's other
        topics, few during a step, are counted alike)."""
        per = self.jobs_per_record
        return None if per is None else round(records * per)

    @property
    def keeps_up(self) -> bool:
        behind = 0 if (worst := self.most_behind) is None else worst[1]
        return (self.drained and not self.refused and self.achieved >= ACHIEVED_SHARE * self.offered
                and behind <= self.allowed_behind)

    def as_json(self) -> dict[str, Any]:
        return {
            "offered_per_s": self.offered, "achieved_per_s": round(self.achieved), "sent": self.sent,
            "accepted": self.accepted, "requests_refused_503": self.refused,
            "seconds": round(self.seconds, 2), "keeps_up": self.keeps_up, "drained": self.drained,
            "answer_s": Latency(self.answers, 0).as_json(),
            "lag_at_end": self.lag, "records_appended": self.records,
            "jobs_per_record": None if (per := self.jobs_per_record) is None else round(per, 2),
            "keep_up_bound_records": round(self.allowed_behind), "most_behind": self._most_behind_json(),
            "latency_from_202": {t: v.as_json() for t, v in self.latency.items()},
            "processes": {name: p.as_json() for name, p in self.processes.items()},
            "memory": {name: m.as_json() for name, m in self.memory.items()},
            "machine": None if self.machine is None else self.machine.as_json(),
        }

    def _most_behind_json(self) -> dict[str, Any] | None:
        if (worst := self.most_behind) is None:
            return None
        consumer, records = worst
        return {"consumer": consumer, "records": records, "jobs_about": self.about_jobs(records)}


def figure(steps: Sequence[StepResult]) -> int | None:
    """The highest offered rate the engine kept up with, counting only an unbroken run from the lowest step."""
    best = None
    for step in sorted(steps, key=lambda s: s.offered):
        if not step.keeps_up:
            break
        best = step.offered
    return best


@dataclass
class EngineRun:
    mode: Mode
    steps: list[StepResult] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "figure_jobs_per_s": figure(self.steps),
                "steps": [s.as_json() for s in self.steps]}


def as_json(runs: Sequence[EngineRun], seconds: float, *, brokers: int = 1) -> str:
    return json.dumps({"seconds_per_step": seconds, "cpus": os.cpu_count(), "kafka_brokers": brokers,
                       "runs": [r.as_json() for r in runs]}, indent=2)
