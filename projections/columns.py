"""A batch's columns as one text each, for the folds that write a row per job.

asyncpg encodes an array element by element: a timestamptz 0.74 µs, a text two abstract-base-class checks, a uuid
a Python property call (timeit, issue 18). One text of space-separated values, split by Postgres, costs a join. An
id, API name or account id has no space (events/types.py); a time travels as whole microseconds since the epoch,
read back as `timestamptz 'epoch' + us * interval '1 microsecond'` from `string_to_array(…, ' ')::int8[]`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from pydantic_core import TzInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
# Offsets that never change: a time in one of them, less the epoch in the same tzinfo object, is a plain subtraction
# (Python compares offsets only across tzinfo objects), 0.26 against 0.60 µs a job. Times parsed from the log share
# pydantic's one UTC TzInfo.
_FIXED_OFFSETS = (TzInfo, timezone)


def micros(times: Iterable[datetime]) -> str:
    """The times as whole microseconds since the epoch, space-separated. A time the same object as the one before
    (the jobs of one record share their log time) is converted once."""
    out: list[str] = []
    last: datetime | None = None
    text = ""
    zone: tzinfo | None = UTC
    epoch = EPOCH
    for at in times:
        if at is not last:
            if at.tzinfo is not zone:
                zone = at.tzinfo
                epoch = EPOCH.astimezone(zone) if isinstance(zone, _FIXED_OFFSETS) else EPOCH
            last, text = at, str((at - epoch) // MICROSECOND)
        out.append(text)
    return " ".join(out)
