"""Reconciling a month of the RapidAPI channel: read the three numbers, apply the pure rules, record the result.

It runs on demand (`jobmeter rapidapi reconcile`) and as a worker beside the `rapidapi` consumer, which
compares every month that has an export once that export has settled (no new row logged for
RAPIDAPI_RECONCILE_SETTLE_SECONDS), every RAPIDAPI_RECONCILE_INTERVAL_SECONDS. It is a worker, not part of the
fold, so a replay (which folds the two topics in whatever interleaving it reads them) never publishes the
half-caught-up figures it passes through.

Each discrepancy is a ReconciliationDiscrepancy written to the `rapidapi` projection's outbox, so it is
published once per (period, user, kind, figures) however often the month is reconciled; this process relays
what it wrote right away, and a running `rapidapi` consumer would relay it too (rows are claimed, never sent
twice by two relays).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from events.rapidapi import ReconciliationDiscrepancy
from projections.db import transaction
from projections.outbox import emit
from projections.rapidapi.queries import export_imported, figures, settled_months
from projections.rapidapi.reconcile import Tolerance, UserFigures, reconcile
from services.ledger.channels import month_bounds
from services.platform.poll import PollPolicy, poll
from services.platform.relay import relay_once
from services.platform.resources import Resources

log = structlog.get_logger(__name__)

PRODUCER = "jobmeter-rapidapi-reconciler"


@dataclass(frozen=True)
class MonthReconciled:
    period: str
    users: list[UserFigures]
    discrepancies: list[ReconciliationDiscrepancy]
    export_imported: bool
    newly_recorded: int


async def reconcile_month(
    res: Resources, period: str, *, tolerance: str | None = None, record: bool = True
) -> MonthReconciled:
    month_bounds(period)  # refuses anything that is not YYYY-MM, before any query
    rule = Tolerance.parse(tolerance if tolerance is not None else res.settings.rapidapi_reconcile_tolerance)
    async with transaction(res.pool_for("rapidapi"), "rapidapi") as conn:
        users = await figures(conn, period, res.settings.rapidapi_billing_object)
        imported = await export_imported(conn, period)
        found = reconcile(period, users, rule, export_imported=imported)
        new = await emit(conn, found, producer=PRODUCER) if record else 0
    if new:
        while await relay_once(res.pool_for("rapidapi"), "rapidapi", res.publisher):
            pass
    return MonthReconciled(period, users, found, imported, new)


async def run_rapidapi_reconciler(res: Resources, schema: str = "rapidapi") -> None:
    """Reconcile settled months forever (until cancelled); a failed pass is logged and the next one retries.
    The first pass waits an interval too: a process that just started lets the month settle first."""
    s = res.settings

    async def one_pass() -> bool:
        async with res.pool_for(schema).acquire() as conn:
            periods = await settled_months(conn, s.rapidapi_reconcile_settle_seconds)
        for period in periods:
            month = await reconcile_month(res, period)
            if month.newly_recorded:
                log.warning("rapidapi discrepancies", period=period, new=month.newly_recorded,
                            users=sorted({d.rapidapi_user for d in month.discrepancies}))
        return False  # each month is reconciled whole in one pass: nothing is left for an immediate next one

    interval = s.rapidapi_reconcile_interval_seconds
    await poll("rapidapi reconciler", one_pass, PollPolicy(idle=interval, first_delay=interval))
