"""The forecast watcher: warns an account when its period's forecast runs past a limit it has not reached yet.

Every `WATCH_SECONDS` (15 min) it forecasts the current period (`services.ledger.forecasts`) of each
account with jobs in the last `LOOKBACK` (a superset of the accounts with usage in their current period), and
publishes `UsageForecastExceeded` for each limit — the jobs the plan includes, the cap on all its jobs — that the
forecast passes while the jobs so far are still under it. The event's id is natural per (account, period, limit
kind, scope), so a second publication (a restart, two watchers) is the same fact, which every reader drops; the
watcher also skips what the `webhooks` fold (beside which it runs) has already kept, and what it published itself.
A forecast resting on less than `MIN_HISTORY` of the period is too noisy to warn on (one busy first hour would
forecast a month of it), so none is raised before then.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import structlog

from events.usage import UsageForecastExceeded
from projections.db import has_table, transaction
from projections.ledger.queries import busiest_accounts
from projections.webhooks import store as webhooks_store
from services.ledger.forecasts import period_outlook
from services.platform.poll import PollPolicy, poll
from services.platform.resources import Resources

log = structlog.get_logger(__name__)

LOOKBACK = timedelta(days=32)  # longer than any monthly period: its accounts with jobs in it are all found
MIN_HISTORY = timedelta(days=2)
MAX_ACCOUNTS = 100_000  # per pass, the busiest first
WATCH_SECONDS = 900.0  # a forecast moves slowly; the alert is a warning days ahead, so minutes late costs nothing


def forecast_alerts(account_id: str, start: datetime, end: datetime, document: dict[str, Any], cap: int | None,
                    now: datetime) -> list[UsageForecastExceeded]:
    """The limits this forecast passes before the account reached them. Pure."""
    if now - start < MIN_HISTORY:
        return []
    jobs, forecast = int(document["jobs_to_date"]), int(document["forecast_jobs"])
    reached = date.fromisoformat(document["cap_reached_on"]) if document.get("cap_reached_on") else None
    limits: list[tuple[Literal["cap", "included"], int, date | None]] = []
    if document.get("included_jobs"):
        limits.append(("included", int(document["included_jobs"]), None))
    if cap:
        limits.append(("cap", cap, reached))
    return [
        UsageForecastExceeded(account_id=account_id, period_start=start, period_end=end, limit_kind=kind,
                              limit=limit, jobs_to_date=jobs, forecast_jobs=forecast,
                              forecast_high=max(int(document["forecast_high"]), forecast), reached_on=on,
                              forecast_at=now)
        for kind, limit, on in limits if jobs < limit < forecast
    ]


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
    found: list[UsageForecastExceeded] = []
    for account in active:
        outlook = await period_outlook(res, account, now)
        found += forecast_alerts(account, outlook.start, outlook.end, outlook.document, outlook.cap, now)
    seen = already if already is not None else set()
    found = [f for f in found if f.natural_id() not in seen]
    if found:
        async with transaction(res.pool_for(schema), schema) as conn:
            kept = await webhooks_store.known_events(conn, [f.natural_id() for f in found])
        found = [f for f in found if f.natural_id() not in kept]
    if found:
        await res.publisher.publish_many(found)
        seen.update(f.natural_id() for f in found)
        log.info("usage forecast past a limit", alerts=[(f.account_id, f.limit_kind) for f in found][:20])
    return found


async def run_forecast_watch(res: Resources, schema: str) -> None:
    """Look every `WATCH_SECONDS` until cancelled."""
    published: set[Any] = set()

    async def one_pass() -> bool:
        await watch_once(res, schema, already=published)
        return False  # the next look is due no sooner than the next interval

    await poll("forecast watch", one_pass, PollPolicy(idle=WATCH_SECONDS))
