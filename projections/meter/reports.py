"""The meter outbox's life cycle: claim what is due, then mark it sent, expired or failed (with its event).

A claim freezes a report's value and leases it to one sender; a sender that dies leaves the lease to run out,
and the next claim sends the same identifier with the same value again, which Stripe drops as a duplicate.
Marking and emitting the event happen in one transaction, so the bus hears of each report exactly once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg

from events.billing import MeterUsageReported, MeterUsageUnreportable
from projections.meter.errors import ErrorReport, Failure
from projections.meter.windows import expiry_detail, oldest_sendable
from projections.outbox import emit

PRODUCER = "meter"
Unreportable = Literal["expired", "rejected"]

CLAIM_DUE = """
WITH due AS (
    SELECT customer_id, window_start, seq FROM reports
    WHERE (state = 'pending' AND window_start + make_interval(secs => window_seconds + $2) <= $1)
       OR (state = 'sending' AND claimed_until <= $1)
    ORDER BY window_start, customer_id, seq
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE reports AS r SET state = 'sending', claimed_until = $1 + $4::interval, attempts = r.attempts + 1
FROM due
WHERE r.customer_id = due.customer_id AND r.window_start = due.window_start AND r.seq = due.seq
RETURNING r.*
"""

FINISH = """
UPDATE reports SET state = $4, sent_at = $5, claimed_until = NULL, last_error = $6
WHERE customer_id = $1 AND window_start = $2 AND seq = $3 AND state = 'sending'
RETURNING *
"""

POSTPONE = """
UPDATE reports SET claimed_until = $4, last_error = $5
WHERE customer_id = $1 AND window_start = $2 AND seq = $3 AND state = 'sending'
"""


@dataclass(frozen=True)
class Report:
    customer_id: str
    window_start: datetime
    seq: int
    account_id: str
    window_seconds: int
    identifier: str
    value: int
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime
    claimed_until: datetime | None
    sent_at: datetime | None
    acknowledged_at: datetime | None = None  # an expired report an operator billed by hand
    acknowledged_note: str | None = None

    @classmethod
    def of(cls, row: asyncpg.Record) -> Report:
        return cls(**dict(row))

    def key(self) -> tuple[str, datetime, int]:
        return self.customer_id, self.window_start, self.seq

    def as_json(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


async def claim_due(
    conn: asyncpg.Connection, now: datetime, *, lateness_seconds: float, lease: timedelta, limit: int = 500
) -> list[Report]:
    """Closed windows not yet sent, and claims whose lease ran out; each now frozen and leased to the caller."""
    rows = await conn.fetch(CLAIM_DUE, now, float(lateness_seconds), limit, lease)
    return [Report.of(r) for r in rows]


async def mark_sent(conn: asyncpg.Connection, report: Report, event_name: str, now: datetime) -> bool:
    row = await conn.fetchrow(FINISH, *report.key(), "sent", now, None)
    if row is None:
        return False  # another sender finished it after our lease ran out: it already emitted the event
    done = Report.of(row)
    event = MeterUsageReported(
        account_id=done.account_id, stripe_customer_id=done.customer_id, event_name=event_name,
        window_start=done.window_start, window_seconds=done.window_seconds, seq=done.seq,
        identifier=done.identifier, value=done.value, sent_at=now,
    )
    await emit(conn, [event], producer=PRODUCER, occurred_at=now)
    return True


async def mark_unreportable(
    conn: asyncpg.Connection, report: Report, reason: Unreportable, detail: str, now: datetime
) -> bool:
    state = "expired" if reason == "expired" else "failed"
    row = await conn.fetchrow(FINISH, *report.key(), state, None, detail)
    if row is None:
        return False
    event = MeterUsageUnreportable(
        account_id=report.account_id, stripe_customer_id=report.customer_id, window_start=report.window_start,
        window_seconds=report.window_seconds, seq=report.seq, identifier=report.identifier, value=report.value,
        reason=reason, detail=detail,
    )
    await emit(conn, [event], producer=PRODUCER, occurred_at=now)
    return True


# Reports Stripe took (sent) that its later validation refused. A report's `sent_at` is written after Stripe's
# answer, so it trails Stripe's receipt: the window is widened by REPORTED_SLACK at its end.
FAIL_REPORTED = """
UPDATE reports SET state = 'failed', last_error = $6
WHERE state = 'sent' AND (
    identifier = ANY($2::text[])
    OR (sent_at BETWEEN $3::timestamptz AND $4::timestamptz + $5::interval AND (
        $1 = 'meter'
        OR ($1 = 'customer' AND customer_id IN (SELECT customer_id FROM reports WHERE identifier = ANY($2::text[])))
    ))
)
RETURNING *
"""
REPORTED_SLACK = timedelta(minutes=5)


async def fail_reported(conn: asyncpg.Connection, failure: Failure, report: ErrorReport, now: datetime) -> list[Report]:
    """Mark the sent reports a meter error report refused as failed, each with its event; returns them."""
    detail = failure.detail(report.summary)[:1000]
    rows = await conn.fetch(FAIL_REPORTED, failure.scope, sorted(failure.identifiers), report.start, report.end,
                            REPORTED_SLACK, detail)
    failed = [Report.of(r) for r in rows]
    await emit(conn, [
        MeterUsageUnreportable(
            account_id=r.account_id, stripe_customer_id=r.customer_id, window_start=r.window_start,
            window_seconds=r.window_seconds, seq=r.seq, identifier=r.identifier, value=r.value, reason="rejected",
            detail=detail,
        ) for r in failed
    ], producer=PRODUCER, occurred_at=now)
    return failed


async def resend(
    conn: asyncpg.Connection, account_id: str | None, identifiers: list[str], now: datetime
) -> list[Report]:
    """Put failed reports back in line, as claims whose lease has run out: the sender takes them on its next pass,
    with the value and identifier they had (Stripe recorded none of them, and counts an identifier once should one
    have got through after all). Only failed reports Stripe would still take: a window past its age is expired
    by the sender (`expire_unsendable`), not sent."""
    rows = await conn.fetch(
        """UPDATE reports SET state = 'sending', claimed_until = $3
           WHERE state = 'failed' AND ($1::text IS NULL OR account_id = $1)
             AND (cardinality($2::text[]) = 0 OR identifier = ANY($2::text[])) AND window_start >= $4
           RETURNING *""",
        account_id, identifiers, now, oldest_sendable(now),
    )
    return [Report.of(r) for r in rows]


async def expire_unsendable(conn: asyncpg.Connection, now: datetime, limit: int = 500) -> list[Report]:
    """Failed reports whose window is now past what Stripe takes: no resend can ever succeed, so each ends
    expired (final), keeping why it failed. Nothing new goes on the bus: it heard `MeterUsageUnreportable` for the
    report when Stripe refused it, and that event is once per identifier (its natural id). Pending and claimed
    reports past the age are expired by the claim itself (`send_verdict`)."""
    rows = await conn.fetch(
        """SELECT * FROM reports WHERE state = 'failed' AND window_start < $1
           ORDER BY window_start LIMIT $2 FOR UPDATE SKIP LOCKED""",
        oldest_sendable(now), limit,
    )
    expired = [Report.of(r) for r in rows]
    for report in expired:
        await conn.execute(
            """UPDATE reports SET state = 'expired', claimed_until = NULL, last_error = $4
               WHERE customer_id = $1 AND window_start = $2 AND seq = $3""",
            *report.key(), expiry_detail(report.last_error)[:1000],
        )
    return expired


async def acknowledge(conn: asyncpg.Connection, identifiers: list[str], note: str, now: datetime) -> list[Report]:
    """Expired reports an operator has billed by hand: off `jobmeter doctor` from now on, with the note."""
    rows = await conn.fetch(
        """UPDATE reports SET acknowledged_at = $3, acknowledged_note = $2
           WHERE state = 'expired' AND acknowledged_at IS NULL AND identifier = ANY($1::text[])
           RETURNING *""",
        identifiers, note[:1000], now,
    )
    return [Report.of(r) for r in rows]


async def expired_reports(conn: asyncpg.Connection, account_id: str | None, *, acknowledged: bool) -> list[Report]:
    """Expired reports (of one account, when given), oldest window first; acknowledged ones only when asked."""
    rows = await conn.fetch(
        """SELECT * FROM reports WHERE state = 'expired' AND ($1::text IS NULL OR account_id = $1)
             AND ($2 OR acknowledged_at IS NULL)
           ORDER BY window_start, customer_id, seq""",
        account_id, acknowledged,
    )
    return [Report.of(r) for r in rows]


async def window_jobs(conn: asyncpg.Connection, customer_id: str, start: datetime) -> list[tuple[str, str]]:
    """(api, job_id) of every job counted in the customer's window, whichever sequence number took it (the fold
    records a job's window, not its report)."""
    rows = await conn.fetch(
        "SELECT api, job_id FROM jobs_seen WHERE customer_id = $1 AND window_start = $2 ORDER BY api, job_id",
        customer_id, start,
    )
    return [(r["api"], r["job_id"]) for r in rows]


async def postpone(conn: asyncpg.Connection, report: Report, until: datetime, error: str) -> None:
    """Transient failure: keep the claim (the value stays frozen) and try again after `until`."""
    await conn.execute(POSTPONE, *report.key(), until, error[:1000])


async def reports_of_account(
    conn: asyncpg.Connection, account_id: str, start: datetime | None = None, end: datetime | None = None
) -> list[Report]:
    rows = await conn.fetch(
        """SELECT * FROM reports WHERE account_id = $1
           AND ($2::timestamptz IS NULL OR window_start >= $2) AND ($3::timestamptz IS NULL OR window_start < $3)
           ORDER BY window_start, seq""",
        account_id, start, end,
    )
    return [Report.of(r) for r in rows]
