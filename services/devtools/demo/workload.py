"""The demo's population and its traffic, generated from a seed: who exists, on which channel, and which jobs
each one runs through the sample gateway. Pure: no I/O.

Roles: the first subscriber upgrades mid-period, the second is dunned, the first PAYG account crosses its
threshold, the first marketplace user is the one RapidAPI's export gets wrong.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Literal

from events.rapidapi import rapidapi_account_id

Model = Literal["subscription", "payg", "rapidapi"]
MODELS: tuple[Model, ...] = ("subscription", "payg", "rapidapi")
MARKET_PLANS = ("BASIC", "PRO", "ULTRA", "MEGA")
THRESHOLD_JOBS = 45  # jobs of the first (sync) surface the PAYG scenario account runs: enough to cross


@dataclass(frozen=True)
class Job:
    """One job to run: on which surface, sync or async."""

    api: str
    asynchronous: bool


@dataclass
class Member:
    """A customer of the demo: a direct account (subscription or PAYG) or a RapidAPI marketplace user."""

    account_id: str
    model: Model
    jobs: list[Job]
    rapidapi_user: str | None = None
    plan: str | None = None  # the marketplace plan (X-RapidAPI-Subscription)
    customer_id: str | None = None  # set once Stripe made the customer
    key: str | None = None  # set once a key is issued

    @property
    def direct(self) -> bool:
        return self.model != "rapidapi"


@dataclass
class Population:
    run: str
    members: list[Member] = field(default_factory=list)

    def of(self, model: Model) -> list[Member]:
        return [m for m in self.members if m.model == model]

    @property
    def upgrader(self) -> Member:
        return self.of("subscription")[0]

    @property
    def dunned(self) -> Member:
        return self.of("subscription")[1]

    @property
    def payg_crosser(self) -> Member:
        return self.of("payg")[0]

    @property
    def misreported(self) -> Member:
        return self.of("rapidapi")[0]


def generate(sync_apis: list[str], async_apis: list[str], *, accounts: int = 50, seed: int = 7,
             jobs_per_account: tuple[int, int] = (6, 24)) -> Population:
    """`accounts` members (at least 6: two of each kind for the scenarios), spread over the three models and
    every surface; the PAYG scenario account runs only sync jobs of the first surface."""
    if accounts < 6:
        raise ValueError("the demo needs at least 6 accounts (two of each kind)")
    rng = random.Random(seed)  # a workload, not a secret
    run = uuid.uuid4().hex[:6]
    surfaces = [Job(a, False) for a in sync_apis] + [Job(a, True) for a in async_apis]
    population = Population(run)
    for i in range(accounts):
        model = MODELS[i % 3]
        jobs = [rng.choice(surfaces) for _ in range(rng.randint(*jobs_per_account))]
        if model == "rapidapi":
            user = f"fan-{run}-{i:02d}"
            population.members.append(Member(rapidapi_account_id(user), model, jobs, rapidapi_user=user,
                                             plan=rng.choice(MARKET_PLANS)))
        else:
            population.members.append(Member(f"demo-{run}-{i:02d}", model, jobs))
    population.payg_crosser.jobs = [Job(sync_apis[0], False)] * THRESHOLD_JOBS
    return population
