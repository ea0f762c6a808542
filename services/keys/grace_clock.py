"""What runs beside the key lifecycle's fold: the notifier, and the dunning clock.

Stripe sends no event when a past-due grace period runs out, so the clock looks for past-due customers
whose grace is over and puts a PastDueGraceExpired tick on the Stripe topic; the fold then decides, from the
log, exactly as a replay will. A tick published twice (a restart, a slow fold) is the same event, and the
policy does nothing with a tick for an episode that is already over.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog

from events.stripe import PastDueGraceExpired
from projections.catalog import PROJECTIONS
from projections.db import transaction
from projections.key_lifecycle import queries
from projections.key_lifecycle.dunning import DEFAULT_POLICY, DunningPolicy
from projections.key_lifecycle.projection import KeyLifecycle
from services.keys.notify import run_notifier
from services.platform.poll import PollPolicy, poll
from services.platform.resources import Resources

log = structlog.get_logger(__name__)

CLOCK_SECONDS = 60.0


def policy_in_use() -> DunningPolicy:
    projection = PROJECTIONS.get("key-lifecycle")
    return projection.policy if isinstance(projection, KeyLifecycle) else DEFAULT_POLICY


async def publish_due_ticks(
    res: Resources, schema: str, *, now: datetime | None = None, already: set[tuple[str, datetime]] | None = None
) -> list[PastDueGraceExpired]:
    """Publish a tick for every open past-due episode whose grace is over (skipping those in `already`)."""
    policy = policy_in_use()
    now = now or datetime.now(UTC)
    async with transaction(res.pool_for(schema), schema) as conn:
        rows = await queries.past_due_since_before(conn, now - policy.past_due_grace)
    seen = already if already is not None else set()
    ticks = [
        PastDueGraceExpired(customer_id=r["customer_id"], past_due_since=r["past_due_since"],
                            deadline=r["past_due_since"] + policy.past_due_grace)
        for r in rows
        if (r["customer_id"], r["past_due_since"]) not in seen
    ]
    if ticks:
        await res.publisher.publish_many(ticks)
        seen.update((t.customer_id, t.past_due_since) for t in ticks)
        log.info("past-due grace expired", customers=[t.customer_id for t in ticks][:20])
    return ticks


async def run_grace_clock(res: Resources, schema: str, *, every_seconds: float = CLOCK_SECONDS) -> None:
    """Publish due ticks every `every_seconds` until cancelled; a tick is published once per process."""
    published: set[tuple[str, datetime]] = set()

    async def one_pass() -> bool:
        await publish_due_ticks(res, schema, already=published)
        return False  # what is due now was published; the next is due no sooner than the next look

    await poll("dunning clock", one_pass, PollPolicy(idle=every_seconds))


async def run_key_lifecycle_workers(res: Resources, schema: str) -> None:
    await asyncio.gather(run_notifier(res, schema), run_grace_clock(res, schema))
