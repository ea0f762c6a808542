"""Calendar periods in UTC: the month an account's usage, reports and forecasts default to."""

from __future__ import annotations

import calendar
from datetime import datetime


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: datetime) -> datetime:
    """The same time a calendar month later (on the month's last day when it is shorter: Jan 31 → Feb 28)."""
    year, month = start.year + start.month // 12, start.month % 12 + 1
    return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))
