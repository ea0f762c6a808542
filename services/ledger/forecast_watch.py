"""The forecast watcher: warns an account when its period's forecast runs past a limit it has not reached yet.

Every `WATCH_SECONDS` (15 min) it forecasts the current period (`services.ledger.forecasts`) of each
account with jobs in the last `LOOKBACK` (a superset of the accounts with usage in their current period), and
publishes `UsageForecastExceeded` for each limit — the jobs the plan includes, a cap on all its jobs or on one API
surface's, a spend cap — that the forecast passes while the account is still under it (`forecast_limits`, pure).
The event's id is natural per (account, period, limit kind, scope), so a second publication (a restart, two
watchers, a replay) is the same fact, which every reader drops; the watcher also skips what the `webhooks` fold
(beside which it runs) has already kept, and what it published itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from events.usage import UsageForecastExceeded
from projections.caps import queries as caps_queries
from projections.caps.rules import ALL, Cap
from projections.db import has_table, transaction
from projections.ledger.queries import busiest_accounts
from projections.webhooks import store as webhooks_store
from services.ledger.forecast_limits import forecast_alerts
from services.ledger.forecasts import period_outlook
from services.platform.poll import PollPolicy, poll
from services.platform.resources import Resources

log = structlog.get_logger(__name__)

LOOKBACK = timedelta(days=32)  # longer than any monthly period: its accounts with jobs in it are all found
MAX_ACCOUNTS = 100_000  # per pass, the busiest first
WATCH_SECONDS = 900.0  # a forecast moves slowly; the alert is a warning days ahead, so minutes late costs nothing


async def watch_once(res: Resources, schema: str, *, now: datetime | None = None,
                     already: set[Any] | None = None) -> list[UsageForecastExceeded]:
    """One look at every active account; publishes and returns the alerts not raised before (`already`: the ids
    this process published)."""
    now = now or datetime.now(UTC)
    async with res.connections() as db:  # each projection's tables in its own database
        ledger, accounts = await db("ledger"), await db("accounts")
        if not (await has_table(ledger, "ledger.hourly") and await has_table(accounts, "accounts.accounts")):
            return []  # a process without the ledger (a test running one consumer): nothing to forecast from
        active = [r["account_id"] for r in await busiest_accounts(ledger, now - LOOKBACK, MAX_ACCOUNTS)]
        own = await _own_caps(await db("caps"))
    found: list[UsageForecastExceeded] = []
    for account in active:
        outlook = await period_outlook(res, account, now)
        found += forecast_alerts(account, outlook.start, outlook.end, outlook.document, outlook.cap, now,
                                 caps=own.get(account, []), daily_by_api=outlook.per_api_day, since=outlook.since,
                                 terms=outlook.terms)
    seen = already if already is not None else set()
    found = [f for f in found if f.natural_id() not in seen]
    if found:
        async with transaction(res.pool_for(schema), schema) as conn:
            kept = await webhooks_store.known_events(conn, [f.natural_id() for f in found])
        found = [f for f in found if f.natural_id() not in kept]
    if found:
        await res.publisher.publish_many(found)
        seen.update(f.natural_id() for f in found)
        log.info("usage forecast past a limit", alerts=[(f.account_id, f.limit_kind, f.api) for f in found][:20])
    return found


async def _own_caps(conn: asyncpg.Connection) -> dict[str, list[Cap]]:
    """Every account's own caps in force, per account (none before the caps fold made its tables)."""
    if not await has_table(conn, "caps.caps"):
        return {}
    caps: dict[str, list[Cap]] = {}
    for r in await caps_queries.caps(conn):
        caps.setdefault(r["account_id"], []).append(Cap(r["api"] or ALL, r["jobs"], r["hard"], r["spend_minor"]))
    return caps


async def run_forecast_watch(res: Resources, schema: str) -> None:
    """Look every `WATCH_SECONDS` until cancelled."""
    published: set[Any] = set()

    async def one_pass() -> bool:
        await watch_once(res, schema, already=published)
        return False  # the next look is due no sooner than the next interval

    await poll("forecast watch", one_pass, PollPolicy(idle=WATCH_SECONDS))
