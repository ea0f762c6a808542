"""The caps fold: jobs counted per account, period and API surface against the account's caps.

A hard cap reached holds the account's keys (KeySuspended, source `cap`, `until` the period's end) through the
outbox, in the transaction that counted the job that reached it; raising or clearing the cap, or the period
ending (a job of a later period, or the cap clock's CapPeriodEnded), releases the hold. Every threshold crossed
(of each cap, and of the jobs a subscription's plan includes) is an alert once per period. An account's current
period is the one holding the latest time the log has shown for it (a job, a cap change, a period's end), on its
subscription's period grid or the calendar month: a late job of an earlier period is counted there and changes
nothing now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import structlog

from events.caps import CapCleared, CapPeriodEnded, CapSet
from events.envelope import Event
from events.jobs import JobCompleted
from events.keys import KeyRestored, KeySuspended
from events.stripe import StripeEventReceived
from events.usage import LimitKind, UsageCapReached, UsageThresholdCrossed
from jobmeter.settings import Settings
from projections.account_view import ACCOUNT_EVENTS, fold_accounts
from projections.caps import store
from projections.caps.rules import (
    ALL,
    Cap,
    Crossing,
    Grid,
    Overage,
    Period,
    SpendTerms,
    effective_caps,
    evaluate,
    included_crossings,
    parse_percents,
    period_of,
    period_starts,
)
from projections.caps.store import Standing
from projections.db import lock_each
from projections.outbox import emit
from projections.payg.rules import parse_prices
from projections.projection import Projection
from projections.records import Recorded
from projections.subscriptions.state import ENDED, plan_allowances, snapshot

log = structlog.get_logger(__name__)

PRODUCER = "jobmeter-caps"


@dataclass(frozen=True)
class CapsConfig:
    default_jobs: int = 0
    percents: tuple[int, ...] = (80, 100)
    prices: dict[str, int] = field(default_factory=dict)
    plans: dict[str, int] = field(default_factory=dict)  # base price -> jobs a period includes

    def terms(self, plan: str | None) -> SpendTerms:
        """How the account's jobs are priced for a spend cap: the overage past its live subscription's plan (a plan
        this deployment does not know includes nothing, as on the invoice), else the PAYG prices."""
        return self.prices if plan is None else Overage(self.plans.get(plan, 0))

    @classmethod
    def of(cls, s: Settings) -> CapsConfig:
        return cls(s.jobmeter_cap_default_jobs, parse_percents(s.jobmeter_usage_alert_percents),
                   parse_prices(s.jobmeter_payg_prices),
                   plan_allowances(s.stripe_pro_price_id, s.stripe_pro_annual_price_id, s.jobmeter_plan_included_jobs))


def subscription_grid(event: StripeEventReceived) -> Grid | None:
    """The period grid a `customer.subscription.*` event sets for its customer: None when the subscription ended (or
    says no period), so the calendar month applies again. ValueError when the object is not a subscription."""
    state = snapshot(event.data_object, deleted=event.type == "customer.subscription.deleted")
    if state.status in ENDED or state.current_period_start is None or state.current_period_end is None:
        return None
    anchor = event.data_object.get("billing_cycle_anchor")  # the day Stripe keeps, where a short month clamped one
    return Grid.of(state.current_period_start, state.current_period_end,
                   datetime.fromtimestamp(anchor, UTC) if isinstance(anchor, int) else None)


def subscription_events(
    events: Sequence[Recorded[Event]],
) -> list[tuple[StripeEventReceived, Grid | None, str | None]]:
    """Each subscription event with the period grid and the plan (base price) it sets for its customer."""
    found = []
    for item in events:
        event = item.event
        if isinstance(event, StripeEventReceived) and event.type.startswith("customer.subscription.") \
                and event.customer_id is not None:
            try:
                grid = subscription_grid(event)
                plan = snapshot(event.data_object).base_price_id if grid is not None else None
                found.append((event, grid, plan))
            except ValueError:
                continue  # not a subscription object: the subscriptions projection says why; no period to learn
    return found


class Latest(dict[str, datetime]):
    """Per account, the latest time a batch shows for it: a job's completion, a cap's change, a period's end."""

    def see(self, account: str, at: datetime) -> None:
        self[account] = max(self.get(account, at), at)


async def apply_change(conn: asyncpg.Connection, change: CapSet | CapCleared | CapPeriodEnded, latest: Latest) -> None:
    if isinstance(change, CapSet):
        cap = Cap(change.api or ALL, change.jobs, change.hard, change.spend_minor)
        await store.set_cap(conn, change.account_id, cap, change.set_at)
        latest.see(change.account_id, change.set_at)
    elif isinstance(change, CapCleared):
        await store.clear_cap(conn, change.account_id, change.api or ALL)
        latest.see(change.account_id, change.cleared_at)
    else:
        latest.see(change.account_id, change.period_end)  # the account is in its next period


class UsageCaps(Projection):
    name = "caps"
    schema = "caps"
    topics = ("accounts", "jobs", "stripe")
    migrations = Path(__file__).parent / "migrations"
    # What a replay must rebuild row for row. Not `standing` nor `alerts`: how many hold decisions were made, and when
    # an alert was raised, depend on how the log was cut into batches (a cap set and raised within one batch holds
    # nothing); what is held and which alerts exist do not.
    tables = ("usage", "caps")
    emits = True
    chunk = 2000  # a handful of round trips per apply whatever its size: see Projection.chunk
    not_swappable = (
        "its `standing.decisions` number the cap holds the key store has applied; a rebuild numbers them afresh, "
        "and the key store would ignore its holds and releases until they passed the live numbers"
    )

    def __init__(self, config: CapsConfig | None = None) -> None:
        self.config = config or CapsConfig()

    def configured(self, settings: Settings) -> UsageCaps:
        return UsageCaps(CapsConfig.of(settings))

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        jobs: list[JobCompleted] = []
        others: list[Recorded[Event]] = []
        for item in events:  # jobs are nearly every event: `type() is` first, isinstance (ABC, slow) for the rest
            if type(item.event) is JobCompleted or isinstance(item.event, JobCompleted):
                jobs.append(item.event)
            else:
                others.append(item)
        registry = [item for item in others if isinstance(item.event, ACCOUNT_EVENTS)]
        registered = {item.event.account_id for item in registry if isinstance(item.event, ACCOUNT_EVENTS)}
        changes = [item.event for item in others if isinstance(item.event, CapSet | CapCleared | CapPeriodEnded)]
        subscriptions = subscription_events(others)
        if not (jobs or registry or changes or subscriptions):
            return  # other facts: nothing to count
        customers = sorted({e.customer_id for e, _, _ in subscriptions if e.customer_id})
        billed = await store.accounts_of_customers(conn, customers) if customers else []
        accounts = [j.account_id for j in jobs]
        counted = set(accounts)
        await lock_each(conn, "caps:account:", counted | registered | {e.account_id for e in changes} | set(billed))
        latest = Latest()
        regrid = await self.regrid(conn, registry, subscriptions, latest)
        grids = await store.grids_of(conn, sorted(counted | regrid))
        times = [j.completed_at for j in jobs]
        # A regrid account's jobs get no period: they go into `seen` only, and its recount below counts them.
        periods = period_starts(zip(accounts, times, strict=True), grids, regrid)
        new = await store.count_new(conn, store.Jobs([j.api for j in jobs], [j.job_id for j in jobs], accounts, times,
                                                     periods))
        for account in sorted(regrid):
            await store.recount(conn, account, grids.get(account))
        for account, at in new.items():
            latest.see(account, at)
        for change in changes:
            await apply_change(conn, change, latest)
        await emit(conn, await self.decide(conn, latest), producer=PRODUCER)

    async def regrid(self, conn: asyncpg.Connection, registry: Sequence[Recorded[Event]],
                     subscriptions: Sequence[tuple[StripeEventReceived, Grid | None, str | None]],
                     latest: Latest) -> set[str]:
        """Fold the registry and the subscriptions' period grids; the accounts whose grid may have changed, to be
        recounted onto it, so a job counts in the same period whichever topic the fold read first."""
        await fold_accounts(conn, [item.event for item in registry])
        regrid: set[str] = set()
        for item in registry:
            if isinstance(item.event, ACCOUNT_EVENTS) and item.event.stripe_customer_id:
                regrid.add(item.event.account_id)
                latest.see(item.event.account_id, item.envelope.occurred_at)
        for event, grid, plan in subscriptions:
            assert event.customer_id is not None
            if await store.save_grid(conn, event.customer_id, grid, event.created, plan):
                for account in await store.accounts_of_customers(conn, [event.customer_id]):
                    regrid.add(account)
                    latest.see(account, event.created)
        return regrid

    async def decide(self, conn: asyncpg.Connection, latest: Latest) -> list[Event]:
        """Each account's current period is the one holding the latest time the log showed for it; its usage there
        against its caps holds or releases its keys, and raises the alerts it crossed."""
        accounts = sorted(latest)
        caps = await store.caps_of(conn, accounts)
        standing = await store.standings(conn, accounts)
        plans = await store.plans_of(conn, accounts)
        included = {a: n for a, price in plans.items() if (n := self.config.plans.get(price, 0))}
        # The others have nothing to hold or alert on; their period is found again once they have a cap or a plan.
        watched = [a for a in accounts if effective_caps(caps.get(a, []), self.config.default_jobs)
                   or a in included or ((row := standing.get(a)) is not None and row.held)]
        if not watched:
            return []  # no cap, plan or hold among them: no round trips for periods and usage nobody reads
        grids = await store.grids_of(conn, watched)
        current: dict[str, tuple[datetime, Period]] = {}
        for account in watched:
            row = standing.get(account)
            at = max(latest[account], row.latest_at) if row else latest[account]
            current[account] = (at, period_of(at, grids.get(account)))
        usage = await store.usage_in(conn, {a: p.start for a, (_, p) in current.items()})
        out: list[Event] = []
        for account, (at, period) in current.items():
            own = effective_caps(caps.get(account, []), self.config.default_jobs)
            verdict = evaluate(own, usage.get(account, {}), self.config.terms(plans.get(account)),
                               self.config.percents)
            before = standing.get(account) or Standing(at, period.start, period.end, False, None, 0)
            moved = before.period_start != period.start
            held = verdict.hold is not None
            decisions = before.decisions
            if held and (not before.held or moved or verdict.hold != before.reason):
                decisions += 1
                # The reason names every hard cap reached, so a change of the surfaces held changes it too.
                out.append(KeySuspended(account_id=account, source="cap", reason=verdict.hold or "", effective_at=at,
                                        cause=f"cap:{decisions}", sequence=decisions, until=period.end,
                                        scope=list(verdict.scope) if verdict.scope else None))
            elif before.held and not held:
                decisions += 1
                why = "usage caps: a new period" if moved else "usage caps: the cap was raised or cleared"
                out.append(KeyRestored(account_id=account, source="cap", reason=why, effective_at=at,
                                       cause=f"cap:{decisions}", sequence=decisions))
            after = Standing(at, period.start, period.end, held, verdict.hold, decisions)
            if after != before or account not in standing:
                await store.save_standing(conn, account, after)
            crossings = verdict.crossings + included_crossings(included.get(account), usage.get(account, {}),
                                                               self.config.percents)
            out += await alerts(conn, account, period, crossings, verdict.reached, at)
            if held != before.held:
                log.info("cap hold " + ("placed" if held else "released"), account_id=account, reason=verdict.hold)
        return out


async def alerts(conn: asyncpg.Connection, account: str, period: Period, crossings: Sequence[Crossing],
                 reached: Sequence[Crossing], at: datetime) -> list[Event]:
    """Each threshold crossed, and each cap reached, once per period."""
    keys = [c.key for c in crossings] + [c.reached_key for c in reached]
    new = await store.raise_alerts(conn, account, period.start, keys, at)
    out: list[Event] = [
        UsageThresholdCrossed(account_id=account, period_start=period.start, period_end=period.end,
                              limit_kind=limit_kind(c), api=c.scope or None,
                              threshold_percent=c.percent, limit=c.limit, used=c.used, crossed_at=at)
        for c in crossings if c.key in new
    ]
    out += [
        UsageCapReached(account_id=account, period_start=period.start, period_end=period.end,
                        limit_kind=limit_kind(c), api=c.scope or None,
                        hard=c.hard, limit=c.limit, used=c.used, reached_at=at)
        for c in reached if c.reached_key in new
    ]
    return out


def limit_kind(crossing: Crossing) -> LimitKind:
    return "included" if crossing.limit_kind == "included" else "spend_cap" if crossing.limit_kind == "spend_cap" \
        else "cap"
