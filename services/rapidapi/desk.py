"""What the RapidAPI gateway remembers: marketplace users and their plans, and which jobs were declared.

Identity: the account of a user is derived from the user (`rapidapi_account_id`), so every process agrees on
it without coordination; its facts (AccountRegistered, MarketplaceUserLinked) carry natural ids, so a repeat
from another process is the same fact. The truth is the `rapidapi` projection; this process keeps a cache and
publishes at most once per user at a time (concurrent first requests wait for one publication).

Declarations: a job is claimed in Postgres (`rapidapi_gateway.claims`) before its billing header is sent, so
concurrent polls, in any number of processes, declare it at most once; the claim is released if the
BillingUnitsDeclared fact could not be published, so a later poll declares it instead.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog

from events.accounts import AccountRegistered
from events.envelope import Event
from events.publisher import Publisher
from events.rapidapi import (
    PLANS,
    BillingUnitsDeclared,
    MarketplacePlanChanged,
    MarketplaceUserLinked,
    RapidApiPlan,
    rapidapi_account_id,
)
from jobmeter.settings import Settings
from projections.migrate import migrate
from projections.rapidapi.queries import user as user_of
from services.rapidapi import store

log = structlog.get_logger(__name__)

DECLARED_CACHE_SIZE = 100_000


def plan_of(header: str | None) -> RapidApiPlan | None:
    """The plan named by X-RapidAPI-Subscription, or None when absent or not one RapidAPI documents."""
    plan = (header or "").strip().upper()
    return plan if plan in PLANS else None  # type: ignore[return-value]


@dataclass(frozen=True)
class PendingJob:
    api: str
    job_id: str
    count: int = 1


@dataclass
class Known:
    account_id: str
    plan: str | None


class RapidApiDesk:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.billing_object = settings.rapidapi_billing_object
        self._pool: asyncpg.Pool | None = None
        self._users_pool: asyncpg.Pool | None = None
        self._publisher: Publisher | None = None
        self._users: dict[str, Known] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._declared: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def open(self, pool: asyncpg.Pool, publisher: Publisher, users: asyncpg.Pool | None = None) -> None:
        """Attach the pool and publisher (the app's lifespan opens them) and create the claims table; `users` is
        the pool of the rapidapi projection's database when it is not DATABASE_URL's."""
        await migrate(self.settings.database_url, store.SCHEMA, store.MIGRATIONS)
        self._pool, self._publisher, self._users_pool = pool, publisher, users

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the RapidAPI desk is not open (call open() in the app's lifespan)")
        return self._pool

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            raise RuntimeError("the RapidAPI desk is not open (call open() in the app's lifespan)")
        return self._publisher

    async def identify(self, user: str, plan: RapidApiPlan | None, now: datetime) -> str:
        """The account of a marketplace user; records the user on first sight and each change of plan."""
        known = self._users.get(user)
        if known is not None and (plan is None or plan == known.plan):
            return known.account_id
        async with self._locks.setdefault(user, asyncio.Lock()):
            known = self._users.get(user) or await self._first_sight(user)
            if plan is not None and plan != known.plan:
                await self.publisher.publish(
                    MarketplacePlanChanged(rapidapi_user=user, account_id=known.account_id, plan=plan, seen_at=now)
                )
                known = Known(known.account_id, plan)
            self._users[user] = known
            return known.account_id

    async def _first_sight(self, user: str) -> Known:
        async with (self._users_pool or self.pool).acquire() as conn:
            try:
                row = await user_of(conn, user)
            except asyncpg.UndefinedTableError:
                row = None  # the projection is not migrated here: publishing the (idempotent) facts is safe
        if row is not None:
            return Known(row["account_id"], row["plan"])
        account_id = rapidapi_account_id(user)
        facts: list[Event] = [
            AccountRegistered(account_id=account_id, model="rapidapi", display_name=f"RapidAPI user {user}"),
            MarketplaceUserLinked(rapidapi_user=user, account_id=account_id),
        ]
        await self.publisher.publish_many(facts)
        log.info("marketplace user linked", rapidapi_user=user, account_id=account_id)
        return Known(account_id, None)

    async def declare(self, user: str, account_id: str, jobs: list[PendingJob], now: datetime) -> int:
        """Claim and record the declaration of jobs not declared before; returns the units to put in the header."""
        fresh = {(j.api, j.job_id): j for j in jobs if (j.api, j.job_id) not in self._declared}
        if not fresh:
            return 0
        pending = list(fresh.values())
        async with self.pool.acquire() as conn:
            claimed = [fresh[key] for key in await store.claim(conn, user, account_id, pending, now)]
        for key in fresh.keys() - {(j.api, j.job_id) for j in claimed}:
            self._remember(key)  # declared already, by another request or process
        if not claimed:
            return 0
        facts = [
            BillingUnitsDeclared(
                rapidapi_user=user, account_id=account_id, api=j.api, job_id=j.job_id,
                billing_object=self.billing_object, count=j.count, declared_at=now,
            )
            for j in claimed
        ]
        try:
            await self.publisher.publish_many(facts)
        except BaseException:
            await self._release(claimed)
            raise
        for j in claimed:
            self._remember((j.api, j.job_id))
        return sum(j.count for j in claimed)

    async def _release(self, jobs: list[PendingJob]) -> None:
        try:
            async with self.pool.acquire() as conn:
                await store.release(conn, jobs)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            # The job stays claimed but undeclared: the reconciliation shows it as ledger_vs_declared.
            log.error("could not release declaration claims", jobs=[(j.api, j.job_id) for j in jobs], error=str(error))

    def _remember(self, key: tuple[str, str]) -> None:
        self._declared[key] = None
        self._declared.move_to_end(key)
        while len(self._declared) > DECLARED_CACHE_SIZE:
            self._declared.popitem(last=False)
