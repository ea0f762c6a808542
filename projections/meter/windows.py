"""Meter windows: which window a job falls in, what a window's meter event is called, and when it may be sent.

Pure rules, no I/O. A window is `[start, start + width)` in UTC, aligned to the epoch. Jobs are summed per
Stripe customer and window; the sum goes to Stripe as ONE meter event whose identifier is derived from the data
(customer, window start, width, sequence), so a retry after a crash carries the same identifier and Stripe drops it.

Jobs that arrive after their window's event was claimed for sending go into the same window with the next
sequence number: a later event, with an identifier of its own, stamped with the same window start so the usage
lands in the period it belongs to.

Stripe's timestamp rules (an event's timestamp lies within the past 35 days and at most 5 minutes ahead):
- a window is sent only once it is closed (its end plus the lateness delay has passed), so its start is never
  ahead of the clock;
- a window older than 35 days (less a safety margin for the request's own delay) cannot be sent: it is EXPIRED,
  reported on the bus as usage Stripe cannot take and listed by `jobmeter stripe reports`, for an operator to
  bill as an invoice item. Never silently dropped. The same holds for a window Stripe refused (failed) or one
  still claimed when it crosses that edge: it can no longer be sent (`resendable`), so it becomes EXPIRED too,
  keeping the reason it could not be sent. An operator bills it by hand and acknowledges it
  (`jobmeter stripe acknowledge`), which takes it off `jobmeter doctor`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

STRIPE_MAX_AGE = timedelta(days=35)
STRIPE_MAX_AHEAD = timedelta(minutes=5)
# Time for the request itself, clock skew and a slow retry: a window this close to the 35-day edge is not tried.
AGE_SAFETY_MARGIN = timedelta(hours=1)
IDENTIFIER_MAX_LENGTH = 100  # Stripe's limit on a meter event identifier


class Verdict(StrEnum):
    WAIT = "wait"  # still open, or (clock skew) ahead of Stripe's 5-minute tolerance
    SEND = "send"
    EXPIRED = "expired"  # older than Stripe accepts: needs an invoice item instead


def window_start(at: datetime, width_seconds: int) -> datetime:
    """The start of the window `at` falls in: epoch-aligned, so every process computes the same windows."""
    if at.tzinfo is None:
        raise ValueError("a job's completion time must be timezone-aware")
    if width_seconds <= 0:
        raise ValueError("window width must be positive")
    epoch = int(at.timestamp() // 1)
    return datetime.fromtimestamp(epoch - epoch % width_seconds, tz=UTC)


def windows_of(times: Iterable[datetime], width_seconds: int) -> tuple[list[datetime], list[int]]:
    """`window_start` of each time, as the distinct windows (first seen first) and each time's place among them
    counted from 1, as Postgres subscripts an array: a batch's jobs fall in a few windows, so each start is made
    once, and the places travel as one text (projections.columns)."""
    if width_seconds <= 0:
        raise ValueError("window width must be positive")
    places: dict[int, int] = {}
    out: list[int] = []
    for at in times:
        if at.tzinfo is None:
            raise ValueError("a job's completion time must be timezone-aware")
        second = int(at.timestamp() // 1)
        start = second - second % width_seconds
        place = places.get(start)
        if place is None:
            place = places[start] = len(places) + 1
        out.append(place)
    return [datetime.fromtimestamp(start, tz=UTC) for start in places], out


def window_end(start: datetime, width_seconds: int) -> datetime:
    return start + timedelta(seconds=width_seconds)


def meter_event_identifier(customer_id: str, start: datetime, width_seconds: int, seq: int) -> str:
    """The deterministic identifier of one customer's meter event for one window and sequence number.

    Readable where it fits (`<customer>-<start epoch>-<width>s-<seq>`); hashed where the customer id is too long
    for Stripe's 100 characters. The width is part of it so that changing the window width can never make two
    different windows collide within Stripe's 24-hour deduplication horizon.
    """
    if seq < 0:
        raise ValueError("sequence numbers start at 0")
    epoch = int(start.timestamp())
    readable = f"{customer_id}-{epoch}-{width_seconds}s-{seq}"
    if len(readable) <= IDENTIFIER_MAX_LENGTH:
        return readable
    digest = hashlib.sha256(customer_id.encode()).hexdigest()[:32]
    return f"h{digest}-{epoch}-{width_seconds}s-{seq}"


def oldest_sendable(now: datetime) -> datetime:
    """The oldest window start Stripe still takes as a meter event's timestamp, with the safety margin."""
    return now - STRIPE_MAX_AGE + AGE_SAFETY_MARGIN


def resendable(start: datetime, now: datetime) -> bool:
    """Could a meter event for the window starting at `start` still be sent (now, or after a fix)?"""
    return start >= oldest_sendable(now)


def expiry_detail(last_error: str | None) -> str:
    """Why a window ended expired, keeping why it was not sent before (Stripe's refusal, the last error)."""
    why = "window older than Stripe accepts for meter events (35 days): bill as an invoice item"
    return f"{why}; not sent before because: {last_error}" if last_error else why


def send_verdict(start: datetime, width_seconds: int, lateness_seconds: float, now: datetime) -> Verdict:
    """May the window starting at `start` be sent now? (Its timestamp on the meter event is `start`.)"""
    if not resendable(start, now):
        return Verdict.EXPIRED
    closes = window_end(start, width_seconds) + timedelta(seconds=lateness_seconds)
    if now < closes or start > now + STRIPE_MAX_AHEAD:
        return Verdict.WAIT
    return Verdict.SEND
