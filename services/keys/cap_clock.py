"""What runs beside the caps' fold: the cap clock.

No job says a capped period is over (the keys are stopped, so jobs stop too), so the clock looks for holds whose
period has ended and puts a CapPeriodEnded tick on the accounts topic; the fold then moves the account to its next
period and releases the hold, from the log, exactly as a replay will. A tick published twice (a restart, a slow
fold) is the same event (its id is natural), and the fold does nothing with a tick for a period it already left.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from events.caps import CapPeriodEnded
from projections.caps import queries
from projections.db import transaction
from services.platform.poll import PollPolicy, poll
from services.platform.resources import Resources

log = structlog.get_logger(__name__)


async def publish_period_ends(
    res: Resources, schema: str, *, now: datetime | None = None, already: set[tuple[str, datetime]] | None = None,
) -> list[CapPeriodEnded]:
    """Publish a tick for every capped period that is over (skipping those in `already`)."""
    async with transaction(res.pool_for(schema), schema) as conn:
        rows = await queries.held_past_period(conn, now or datetime.now(UTC))
    seen = already if already is not None else set()
    ticks = [CapPeriodEnded(account_id=r["account_id"], period_start=r["period_start"], period_end=r["period_end"])
             for r in rows if (r["account_id"], r["period_start"]) not in seen]
    if ticks:
        await res.publisher.publish_many(ticks)
        seen.update((t.account_id, t.period_start) for t in ticks)
        log.info("capped periods ended", accounts=[t.account_id for t in ticks][:20])
    return ticks


async def run_cap_clock(res: Resources, schema: str) -> None:
    """Publish due ticks every `JOBMETER_CAP_CLOCK_SECONDS` until cancelled; each once per process."""
    published: set[tuple[str, datetime]] = set()

    async def one_pass() -> bool:
        await publish_period_ends(res, schema, already=published)
        return False  # what is due now was published; the next is due no sooner than the next look

    await poll("cap clock", one_pass, PollPolicy(idle=res.settings.jobmeter_cap_clock_seconds))
