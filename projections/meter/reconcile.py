"""Reconciliation: the ledger, the meter outbox and Stripe's meter summaries, per customer, for one period.

`differences` is the pure rule; `our_figures` puts the two sides we hold side by side (the ledger's count and the
meter's reports, each read from its owner). Periods are whole hours (the ledger counts per hour) and a window
belongs to the period its start falls in, as its meter event's timestamp does, so the window width must divide an
hour for the two to line up (60 s by default does).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from projections.db import Connect, connector
from projections.ledger import queries as ledger
from projections.meter import queries as meter


@dataclass(frozen=True)
class CustomerUsage:
    account_id: str
    customer_id: str
    ledger: int  # direct-channel jobs the ledger counted
    recorded: int  # jobs the meter reporter recorded for Stripe (any state)
    sent: int  # of those, what Stripe acknowledged
    unsent: int  # waiting for their window to close, or for a retry
    unreportable: int  # expired or refused: to bill as an invoice item
    parked: int = 0  # held by the meter reporter until the account's Stripe customer is known to it
    stripe: int | None = None  # what Stripe's meter summaries say; None when not asked


@dataclass(frozen=True)
class Reconciled:
    usage: CustomerUsage
    differences: list[str]

    @property
    def ok(self) -> bool:
        return not self.differences

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self.usage), "ok": self.ok, "differences": self.differences}


def differences(u: CustomerUsage) -> list[str]:
    """Every way the three figures disagree, each as a sentence an operator can act on."""
    found = []
    if u.ledger != u.recorded:
        found.append(
            f"ledger counted {u.ledger} jobs, the meter reporter recorded {u.recorded}: "
            + ("jobs not yet folded by the meter reporter" if u.ledger > u.recorded
               else "the meter reporter has jobs the ledger lacks")
        )
    if u.parked:
        found.append(f"{u.parked} jobs parked: the meter reporter does not know this account's Stripe customer yet")
    if u.unsent:
        found.append(f"{u.unsent} jobs recorded but not yet acknowledged by Stripe")
    if u.unreportable:
        found.append(f"{u.unreportable} jobs Stripe cannot take as meter events: bill them as an invoice item")
    if u.stripe is not None and u.stripe != u.sent:
        found.append(f"Stripe's meter shows {u.stripe} jobs, Stripe acknowledged {u.sent} from us")
    return found


def reconcile(figures: list[CustomerUsage]) -> list[Reconciled]:
    return [Reconciled(u, differences(u)) for u in figures]


async def our_figures(
    db: Connect | asyncpg.Connection, start: datetime, end: datetime, account_id: str | None = None
) -> list[CustomerUsage]:
    """Per subscription customer: the direct-channel jobs the ledger counted beside what the meter recorded (each
    read in its own projection's database)."""
    connect = connector(db)
    counted = {
        r["account_id"]: int(r["jobs"])
        for r in await ledger.jobs_per_channel(await connect("ledger"), start, end)
        if r["channel"] == "direct"
    }
    rows = await meter.figures_per_customer(await connect("meter"), start, end, account_id)
    return [CustomerUsage(ledger=counted.get(r["account_id"], 0), **dict(r)) for r in rows]


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """`2026-11` (a month), `2026-11-24` (a day) or `2026-11-24T10` (an hour), in UTC, as [start, end)."""
    text = period.strip()
    try:
        if len(text) == 7:
            start = datetime.strptime(text, "%Y-%m").replace(tzinfo=UTC)
            if start.month == 12:
                return start, start.replace(year=start.year + 1, month=1)
            return start, start.replace(month=start.month + 1)
        if len(text) == 10:
            start = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            return start, start + timedelta(days=1)
        if len(text) == 13:
            start = datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=UTC)
            return start, start + timedelta(hours=1)
    except ValueError:
        pass
    raise ValueError(f"period {period!r} is not YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH (UTC)")
