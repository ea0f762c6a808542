"""When a failed delivery is tried again. Pure.

The first retries come within seconds to a minute (an endpoint restarting, a deploy), then they back off to hours;
the last is about three days after the first attempt, and then the delivery is given up (the doctor lists it).
"""

from __future__ import annotations

from datetime import timedelta

RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(seconds=5), timedelta(seconds=30), timedelta(minutes=1),
    timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=1), timedelta(hours=2), timedelta(hours=4),
    timedelta(hours=8), timedelta(hours=16), timedelta(hours=16), timedelta(hours=24),
)
ATTEMPTS = len(RETRY_DELAYS) + 1  # the first, and one after each delay


def retry_delay(failed_attempts: int, scale: float = 1.0) -> timedelta | None:
    """How long after the `failed_attempts`-th failed attempt the next one is due; None once every retry is spent.
    `scale` multiplies every delay (JOBMETER_WEBHOOK_RETRY_SCALE: a test runs the schedule in seconds)."""
    if failed_attempts < 1:
        raise ValueError("a retry follows a failed attempt: failed_attempts starts at 1")
    if failed_attempts > len(RETRY_DELAYS):
        return None
    return RETRY_DELAYS[failed_attempts - 1] * scale
