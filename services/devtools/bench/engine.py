"""`jobmeter bench engine`: the whole engine (HTTP ingest and every consumer, as child processes) under a steady
offered load, in steps. Per step: the rate ingest achieved, each consumer's lag at the end (in records, with the
step's jobs per record to read it as jobs: ingest publishes a record per account and request), the time from the
202 to a job being in the ledger, in the meter's outbox and in the PAYG balance (sampled jobs), CPU and peak RSS per
process (the stack's Kafka, Postgres and stripe-mock included) and the whole machine's busy, idle and unaccounted
CPU.
The engine's figure is the highest step at which ingest took the offered rate and no consumer fell behind more than
two seconds of the records the step appended to the jobs topic.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from events.topics import Topics, ensure_topics
from jobmeter.settings import Settings, state_dir
from projections.catalog import PROJECTIONS
from projections.log import LogReader
from projections.positions import behind
from projections.replay.shadow import read_positions
from services.devtools import store
from services.devtools.bench.engine_figures import (
    TARGETS,
    Account,
    EngineRun,
    Latency,
    Mode,
    Request,
    Sample,
    StepResult,
    Target,
    population,
    requests_for,
)
from services.devtools.bench.engine_machine import database_names, stack_pids
from services.devtools.bench.engine_procs import Meter
from services.devtools.chaos.processes import ServiceProcess
from services.devtools.databases import Connections, projection_connections
from services.devtools.sandbox import sandbox, service_env
from services.engine.runtime import PROJECTION_SERVICES
from services.platform.serving import free_port

PROBE_EVERY = 0.1  # seconds between looks for sampled jobs: the latencies' resolution


@dataclass
class Engine:
    settings: Settings
    mode: Mode
    url: str
    processes: list[ServiceProcess]

    @property
    def pids(self) -> dict[str, int]:
        return {p.name: p.process.pid for p in self.processes if p.process is not None}


@asynccontextmanager
async def engine(settings: Settings, mode: Mode) -> AsyncIterator[Engine]:
    """`run all` (a worker process per consumer behind one command), `run all --one-process`, or one process per
    consumer plus `run http` started separately (as docker-compose deploys it); once /healthz answers."""
    port = free_port()
    env = service_env(settings)
    logs = state_dir() / "logs" / f"bench-engine-{uuid.uuid4().hex[:6]}"
    if mode == "all":
        processes = [ServiceProcess("all", ["all", "--port", str(port)], env, logs)]
    elif mode == "one-process":
        processes = [ServiceProcess("all", ["all", "--one-process", "--port", str(port)], env, logs)]
    else:
        processes = [ServiceProcess("http", ["http", "--port", str(port)], env, logs),
                     *(ServiceProcess(name, [name], env, logs) for name in PROJECTION_SERVICES)]
    for process in processes:
        process.start()
    try:
        url = f"http://127.0.0.1:{port}"
        await _healthy(url, processes, logs)
        yield Engine(settings, mode, url, processes)
    finally:
        for process in processes:
            process.stop()


async def _healthy(url: str, processes: list[ServiceProcess], logs: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url) as client:
        while True:
            dead = [p.name for p in processes if not p.alive]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"the engine did not come up ({', '.join(dead) or 'timeout'}); logs in {logs}")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


class Probes:
    """Looks for sampled jobs where they land, every PROBE_EVERY seconds; latency is from the 202 to the look
    that first found it."""

    LOOKS = {"ledger": store.in_ledger, "meter": store.in_meter_outbox, "payg": store.in_payg}

    def __init__(self, conns: Connections) -> None:
        self.conns = conns
        self.pending: dict[Target, dict[tuple[str, str], float]] = {t: {} for t in TARGETS}
        self.seen: dict[Target, list[float]] = {t: [] for t in TARGETS}

    def accepted(self, samples: Sequence[Sample], at: float) -> None:
        for s in samples:
            self.pending["ledger"][(s.api, s.job_id)] = at
            if s.target != "ledger":
                self.pending[s.target][(s.api, s.job_id)] = at

    async def look(self) -> None:
        for target, pending in self.pending.items():
            if not pending:
                continue
            found = await self.LOOKS[target](self.conns[target], list(pending))
            now = time.monotonic()
            for key in found:
                at = pending.pop(key, None)
                if at is not None:
                    self.seen[target].append(now - at)

    @property
    def outstanding(self) -> int:
        return sum(len(p) for p in self.pending.values())

    def take(self) -> dict[Target, Latency]:
        out = {t: Latency(self.seen[t], len(self.pending[t])) for t in TARGETS}
        self.pending = {t: {} for t in TARGETS}
        self.seen = {t: [] for t in TARGETS}
        return out

async def consumer_lag(settings: Settings, conns: Connections, reader: LogReader) -> dict[str, int]:
    """Records each consumer has not folded yet, over every partition of its topics."""
    topics = Topics(settings.jobmeter_topic_prefix)
    names = sorted({topics.name(t) for s in PROJECTION_SERVICES.values() for t in PROJECTIONS[s].topics})
    ends = await reader.high_watermarks(await reader.partitions(names))
    lag: dict[str, int] = {}
    for service, name in PROJECTION_SERVICES.items():
        projection = PROJECTIONS[name]
        mine = {topics.name(t) for t in projection.topics}
        stored = await read_positions(conns[service], projection.schema)
        lag[service] = behind(stored, ends, mine)
    return lag


async def jobs_records(settings: Settings, reader: LogReader) -> int:
    """Records appended to the jobs topic so far: its partitions' high watermarks, summed."""
    jobs = Topics(settings.jobmeter_topic_prefix).jobs
    return sum((await reader.high_watermarks(await reader.partitions([jobs]))).values())


async def register(client: httpx.AsyncClient, settings: Settings, accounts: Sequence[Account]) -> None:
    token = settings.jobmeter_admin_token.get_secret_value()
    for n, a in enumerate(accounts):
        body: dict[str, Any] = {"account_id": a.account_id, "model": a.model}
        if a.model != "rapidapi":
            body["stripe_customer_id"] = f"cus_bench{n}"
        response = await client.post("/v1/accounts", json=body, headers={"Authorization": f"Bearer {token}"})
        if response.status_code not in (201, 202):
            raise RuntimeError(f"registering {a.account_id}: {response.status_code} {response.text[:300]}")


async def offer(client: httpx.AsyncClient, requests: Sequence[Request], rate: int, seconds: float, probes: Probes,
                in_flight: int) -> tuple[int, int, float, list[float], int]:
    """Send each request at its time on a fixed schedule (open loop, at most `in_flight` at once), for `seconds`
    at most: a slower ingest shows as a lower achieved rate, not as a longer step. Returns jobs sent, jobs accepted,
    seconds until the last answer, how long each answer took and how many requests were answered 503."""
    gate = asyncio.Semaphore(in_flight)
    sent = accepted = 0
    answers: list[float] = []
    refused: list[int] = []
    started = time.monotonic()
    due = started

    async def send(request: Request) -> None:
        nonlocal accepted
        posted = time.monotonic()
        try:
            response = await client.post("/v1/jobs/completed", content=request.body)
        finally:
            gate.release()
        answers.append(time.monotonic() - posted)
        if response.status_code == 503:  # the engine said "retry": not taken, shows as a lower achieved rate
            refused.append(request.jobs)
            return
        if response.status_code != 202:
            raise RuntimeError(f"ingest answered {response.status_code}: {response.text[:300]}")
        accepted += int(response.json()["accepted"])
        probes.accepted(request.samples, time.monotonic())

    tasks = []
    for request in requests:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        await gate.acquire()
        if time.monotonic() - started >= seconds:
            gate.release()
            break
        tasks.append(asyncio.create_task(send(request)))
        sent += request.jobs
        due += request.jobs / rate
    await asyncio.gather(*tasks)
    return sent, accepted, time.monotonic() - started, answers, len(refused)


async def run_step(eng: Engine, client: httpx.AsyncClient, conns: Connections, reader: LogReader,
                   accounts: Sequence[Account], rate: int, seconds: float, *, batch: int, in_flight: int,
                   drain_seconds: float, label: str) -> StepResult:
    requests = requests_for(rate, seconds, batch, accounts, eng.settings.jobmeter_apis, label=label)
    probes = Probes(conns)
    urls = [eng.settings.database_url, *map(eng.settings.database_url_for, PROJECTION_SERVICES)]
    meter = Meter(eng.pids, stack_pids(), database_names(urls))
    first = await jobs_records(eng.settings, reader)
    sending = asyncio.create_task(offer(client, requests, rate, seconds, probes, in_flight))
    ticks = 0
    while not sending.done():
        await asyncio.wait({sending}, timeout=PROBE_EVERY)
        await probes.look()
        ticks += 1
        if ticks % 5 == 0:
            meter.sample()
    sent, accepted, took, answers, refused = await sending
    records = await jobs_records(eng.settings, reader) - first
    lag = await consumer_lag(eng.settings, conns, reader)
    meter.sample(last=True)
    processes = meter.figures()
    machine = meter.machine(processes)
    drained = await _drain(eng, conns, reader, probes, drain_seconds)
    memory = meter.memory(accepted / took if took else 0.0)
    return StepResult(rate, took, sent, accepted, refused, answers, lag, records, probes.take(), processes, drained,
                      memory, machine)


async def _drain(eng: Engine, conns: Connections, reader: LogReader, probes: Probes, seconds: float) -> bool:
    """Until every consumer caught up and every sample was seen, so the next step starts from nothing behind."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await probes.look()
        if not probes.outstanding and not any((await consumer_lag(eng.settings, conns, reader)).values()):
            return True
        await asyncio.sleep(PROBE_EVERY)
    return False


async def bench_engine(base: Settings, mode: Mode, steps: Sequence[int], seconds: float, *, batch: int = 500,
                       in_flight: int = 8, drain_seconds: float = 120, log: Callable[[str], None] = print,
                       ) -> EngineRun:
    """One mode, steps in the order given; stops after a step whose backlog did not drain in `drain_seconds`."""
    run = EngineRun(mode)
    async with sandbox(base) as s:
        await ensure_topics(s.kafka_bootstrap_servers, Topics(s.jobmeter_topic_prefix), s.jobmeter_partitions)
        async with engine(s, mode) as eng:
            tag = uuid.uuid4().hex[:6]
            accounts = population(tag)
            token = s.jobmeter_ingest_token.get_secret_value()
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            limits = httpx.Limits(max_connections=in_flight)
            async with httpx.AsyncClient(base_url=eng.url, headers=headers, timeout=120, limits=limits) as client:
                await register(client, s, accounts)
                async with projection_connections(s, PROJECTION_SERVICES) as conns:  # each in its own database
                    async with LogReader(s.kafka_bootstrap_servers) as reader:
                        log(f"[{mode}] warming up (accounts folded, consumers assigned)")
                        warm = await run_step(eng, client, conns, reader, accounts, 50, 1, batch=batch,
                                              in_flight=in_flight, drain_seconds=120, label=f"warm-{tag}")
                        if not warm.drained:
                            raise RuntimeError("the engine did not fold the warm-up jobs within 120 s")
                        for n, rate in enumerate(steps):
                            log(f"[{mode}] step {n + 1}/{len(steps)}: {rate:,} jobs/s for {seconds:g} s")
                            step = await run_step(eng, client, conns, reader, accounts, rate, seconds, batch=batch,
                                                  in_flight=in_flight, drain_seconds=drain_seconds,
                                                  label=f"s{n}-{tag}")
                            run.steps.append(step)
                            log(f"[{mode}]   achieved {step.achieved:,.0f}/s, keeps up: {step.keeps_up}")
                            if not step.drained:
                                log(f"[{mode}]   backlog not drained in {drain_seconds:g} s: no higher step")
                                break
    return run
