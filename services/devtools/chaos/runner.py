"""One chaos scenario: services as child processes, a workload through HTTP ingest, faults on a schedule,
then the invariants. Every fault is real: SIGKILL of our processes, restarts of the real servers."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from events.publisher import Publisher
from events.topics import Topics
from jobmeter.settings import Settings, state_dir
from projections.ledger import queries as ledger_queries
from projections.payg.rules import parse_prices
from services.devtools import stack
from services.devtools.chaos.attention import doctor_after_run
from services.devtools.chaos.billing import (
    Population,
    StripeForRecharges,
    announced_meter_usage,
    billing_invariants,
    chaos_settings,
    hold_by,
    meter_outbox_unsent,
    register,
)
from services.devtools.chaos.cluster import BrokerFaults
from services.devtools.chaos.invariants import (
    Invariant,
    lag_recovered,
    ledger_counts_each_acknowledged_job_once,
    refusals_accounted,
)
from services.devtools.chaos.processes import ServiceProcess
from services.devtools.chaos.readings import count_dead_letters, records_behind
from services.devtools.chaos.scaling import Scaler, consumer_processes
from services.devtools.chaos.stripe_faults import Mode, StripeFaults, stripe_faults
from services.devtools.chaos.workload import ClientBook, is_bad, make_batch, post_until_answered
from services.devtools.sandbox import service_env
from services.platform.poll import PollPolicy, poll
from services.platform.serving import free_port

Log = Callable[[str], None]
HTTP_START_BOUND = 120.0
# The services' Stripe client gives up after this; a stalled request is held longer (STALL_SECONDS).
STRIPE_TIMEOUT_SECONDS = 3.0
STALL_SECONDS = 5.0


@dataclass
class ChaosReport:
    invariants: list[Invariant]
    faults: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(i.holds for i in self.invariants)

    def as_json(self) -> dict[str, Any]:
        return {**{i.name: i.as_json() for i in self.invariants}, "ok": self.ok, "faults": self.faults,
                **self.figures}


class Scenario:
    def __init__(self, settings: Settings, *, seconds: float, accounts: int = 40, batch: int = 100,
                 bad_ratio: float = 0.1, lag_bound: float = 90.0, billing_bound: float = 90.0, seed: int = 11,
                 brokers: int = 1, stripe_fault_seconds: float = 30.0, log: Log = print) -> None:
        # Every service reaches Stripe (stripe-mock) through a fault-injecting front, on a port chosen now.
        self.stripe_mock = settings.stripe_api_base
        self.stripe_port = free_port()
        self.stripe_fault_seconds = stripe_fault_seconds
        self.stripe_quiet_at = 0.0  # time.monotonic() when the last Stripe fault stretch ends
        self.front: StripeFaults | None = None
        settings = settings.model_copy(update={"stripe_api_base": f"http://127.0.0.1:{self.stripe_port}"})
        self.settings = settings = chaos_settings(settings)
        self.seconds = seconds
        self.batch = batch
        self.bad_ratio = bad_ratio
        self.lag_bound = lag_bound
        self.billing_bound = billing_bound
        self.rng = random.Random(seed)  # a workload, not a secret
        self.log = log
        self.run = uuid.uuid4().hex[:6]
        self.accounts = [f"chaos-{self.run}-{i}" for i in range(accounts)]
        # A quarter bill through Stripe meters, a quarter pay as they go, the rest are direct and unregistered.
        self.people = Population.split(self.accounts, self.run, accounts // 4, accounts // 4)
        self.stripe = StripeForRecharges(settings)
        self.port = free_port()
        env = {**service_env(settings), "JOBMETER_STRIPE_TIMEOUT_SECONDS": str(STRIPE_TIMEOUT_SECONDS)}
        logs = state_dir() / "logs" / f"chaos-{self.run}"
        self.http = ServiceProcess("http", ["http", "--port", str(self.port)], env, logs)
        # On a cluster: two static instances of every consumer but the ledger: one, and a second comes and goes.
        self.consumers = consumer_processes(env, self.run, logs, brokers)
        self.scaler = Scaler(settings, env, logs) if brokers > 1 else None
        self.brokers = BrokerFaults(settings, self.rng, log) if brokers > 1 else None
        self.book = ClientBook()
        self.faults: list[str] = []
        self.garbage = 0
        self.announced = 0
        self.unrelayed = 0
        self.held_after: dict[str, float | None] = {}

    async def run_scenario(self) -> ChaosReport:
        async with stripe_faults(self.stripe_mock, port=self.stripe_port, stall_seconds=STALL_SECONDS) as front:
            self.front = front
            return await self._run()

    async def _run(self) -> ChaosReport:
        for process in (self.http, *self.consumers):
            process.start()
        supervisor = asyncio.create_task(self._supervise())
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10) as client:
                await self._wait_http(client)
                await register(client, self.settings, self.people)
                stripe = asyncio.create_task(self.stripe.run(client))
                try:
                    await self._inject_garbage()
                    traffic = asyncio.create_task(self._traffic(client))
                    await self._faults()
                    await traffic
                    started = time.monotonic()
                    caught_up = await self._wait_caught_up()
                    lag = time.monotonic() - started if caught_up else None
                    started = time.monotonic()
                    billing = await self._wait_billed()
                    settled = round(time.monotonic() - started, 1)
                finally:
                    stripe.cancel()
            doctor = await doctor_after_run(self.settings, {f"garbage-{n}" for n in range(self.garbage)})
            scaling = [self.scaler.invariant()] if self.scaler else []
            return ChaosReport([*await self._invariants(lag), *billing, doctor, *scaling], self.faults,
                               self._figures(settled))
        finally:
            supervisor.cancel()
            for process in self._all():
                process.stop()

    async def _supervise(self) -> None:
        """Like docker-compose's `restart: unless-stopped`: a service that exits on its own (e.g. Postgres was
        restarting while it started) is started again; how often is in the figures (`exits`)."""

        async def one_pass() -> bool:
            for process in self._all():
                if process.revive():
                    self.log(f"{process.name} exited on its own; started again")
            return False

        await poll("chaos-supervisor", one_pass, PollPolicy(idle=1.0, first_delay=1.0))

    def _figures(self, settled: float) -> dict[str, Any]:
        people = self.people
        return {"retries": self.book.retries, "kills": {p.name: p.kills for p in self._all()},
                "exits": {p.name: p.exits for p in self._all() if p.exits},
                "broker_kills": self.brokers.killed if self.brokers else [],
                "rebalances": self.scaler.figures() if self.scaler else [],
                "billing_settle_seconds": settled, "billing_bound_seconds": self.billing_bound,
                "billing_held_after_seconds": self.held_after,
                "webhook_deliveries": self.stripe.deliveries, "meter_usage_reported_on_bus": self.announced,
                "meter_outbox_unrelayed": self.unrelayed, "stripe_front": self.front.figures() if self.front else {},
                "accounts": {"subscription": len(people.customers), "payg": len(people.payg),
                             "unregistered": len(self.accounts) - len(people.customers) - len(people.payg)}}

    def _all(self) -> list[ServiceProcess]:
        return [self.http, *self.consumers, *(self.scaler.processes if self.scaler else [])]

    async def _wait_http(self, client: httpx.AsyncClient) -> None:
        # Generous: on a cluster, two dozen processes start at once, and two cores take a while to import them all.
        deadline = time.monotonic() + HTTP_START_BOUND
        while time.monotonic() < deadline:
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the HTTP app did not come up within {HTTP_START_BOUND:.0f}s; see its log in "
                           f"{state_dir() / 'logs' / f'chaos-{self.run}'}")

    async def _traffic(self, client: httpx.AsyncClient) -> None:
        token = self.settings.jobmeter_ingest_token.get_secret_value()
        deadline = time.monotonic() + self.seconds
        serial = 0
        while time.monotonic() < deadline:
            batch = make_batch(self.rng, self.accounts, self.settings.jobmeter_apis, serial, size=self.batch,
                               bad_ratio=self.bad_ratio, run=self.run, spread_seconds=20)
            self.book.bad_sent += sum(1 for item in batch if is_bad(item, self.settings.jobmeter_apis))
            await post_until_answered(client, batch, token, self.book)
            serial += 1

    async def _inject_garbage(self) -> None:
        """Bytes on the job topic that no consumer can read: each must reach the dead-letter topic."""
        topics = Topics(self.settings.jobmeter_topic_prefix)
        async with Publisher(self.settings.kafka_bootstrap_servers, producer="chaos", topics=topics) as publisher:
            for n in range(5):
                await publisher.send_raw(topics.jobs, f"garbage-{n}".encode(), b"\x00not json at all")
        self.garbage = 5

    async def _faults(self) -> None:
        """Faults spread over the run: each consumer, the HTTP app, Kafka, Postgres, stripe-mock; and Stripe failing,
        on a clock of its own (`_stripe_outage`), as is the ledger's scaling on a cluster (`Scaler`)."""
        beside = [self._stripe_outage(), *([self.scaler.run(self.seconds, self.log)] if self.scaler else [])]
        clocks = [asyncio.create_task(work) for work in beside]
        actions: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            *[(f"SIGKILL {p.name}", self._bounce(p)) for p in self.consumers],
            ("SIGKILL http", self._bounce(self.http)),
            *(self.brokers.actions() if self.brokers else [("restart kafka", self._restart_server("kafka"))]),
            ("restart postgres", self._restart_server("postgres")),
            ("stripe-mock down", self._stripe_down),
        ]
        self.rng.shuffle(actions)
        gap = self.seconds / (len(actions) + 1)
        for name, action in actions:
            await asyncio.sleep(gap * self.rng.uniform(0.6, 1.0))
            self.log(f"fault: {name}")
            await action()
            self.faults.append(name)
        await asyncio.gather(*clocks)

    def _bounce(self, process: ServiceProcess) -> Callable[[], Awaitable[None]]:
        async def bounce() -> None:
            process.kill()
            await asyncio.sleep(self.rng.uniform(0.5, 2.0))
            process.start()

        return bounce

    def _restart_server(self, name: str) -> Callable[[], Awaitable[None]]:
        async def restart() -> None:
            await asyncio.to_thread(stack.restart, name)

        return restart

    async def _stripe_down(self) -> None:
        await asyncio.to_thread(stack.kill, "stripe-mock")
        await asyncio.sleep(3)
        await asyncio.to_thread(stack.restart, "stripe-mock")

    async def _stripe_outage(self) -> None:
        """Stripe answers 500 for a stretch, then holds every request past the client's timeout for another, from a
        quarter into the traffic: timed apart from the shuffled faults, whose restarts can take long enough to
        leave a late fault with no traffic to hit, and overlapping whichever of them fall in its stretches."""
        assert self.front is not None
        await asyncio.sleep(self.seconds / 4)
        modes: list[tuple[str, Mode]] = [("stripe 500s", "500"), ("stripe timeouts", "stall")]
        for name, mode in modes:
            self.log(f"fault: {name}")
            self.faults.append(name)
            self.stripe_quiet_at = self.front.fail(mode, self.stripe_fault_seconds)
            await asyncio.sleep(self.stripe_fault_seconds)

    async def _wait_billed(self) -> list[Invariant]:
        """The billing invariants, once they hold or the bound runs out: the last windows must close and be sent,
        and the last recharges end, after the faults (the bound counts from the end of Stripe's last stretch)."""
        prices = parse_prices(self.settings.jobmeter_payg_prices)
        deadline = max(time.monotonic(), self.stripe_quiet_at) + self.billing_bound
        self.held_after = await hold_by(deadline, lambda: billing_invariants(self.settings, self.people, prices))
        announced = await announced_meter_usage(self.settings)
        self.announced = len(announced)
        self.unrelayed = await meter_outbox_unsent(self.settings)
        return await billing_invariants(self.settings, self.people, prices, announced)

    async def _wait_caught_up(self) -> bool:
        """True once every projection's stored positions reach the end of its topics."""
        deadline = time.monotonic() + self.lag_bound
        while time.monotonic() < deadline:
            if await records_behind(self.settings) == 0:
                return True
            await asyncio.sleep(0.5)
        return False

    async def _invariants(self, lag: float | None) -> list[Invariant]:
        topics = Topics(self.settings.jobmeter_topic_prefix)
        conn = await asyncpg.connect(self.settings.database_url_for("ledger"))
        try:
            distinct = await ledger_queries.job_count(conn)
            total = await ledger_queries.total_jobs(conn)
        finally:
            await conn.close()
        dead = await count_dead_letters(self.settings, topics.deadletters, "ledger")
        return [
            ledger_counts_each_acknowledged_job_once(len(self.book.acknowledged), distinct, total),
            refusals_accounted(self.book.bad_sent, self.book.refused, self.garbage, dead),
            lag_recovered(lag, self.lag_bound, [p.name for p in self._all() if not p.alive]),
        ]
