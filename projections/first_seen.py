"""Rows inserted once by their identity, with ON CONFLICT only while copies are about.

A job is written once by every fold that keeps it (the ledger, caps, the meter, PAYG's debits, RapidAPI's ledger),
keyed by its identity, so a copy of it — a client's retry after a refused request, the same job in two batches —
counts once. `INSERT … ON CONFLICT DO NOTHING` does that for each row by a speculative insertion: it probes the
unique index, inserts, inserts into the index and marks the row final, two index descents and one more WAL record
where a plain INSERT has one descent. On this machine that is ~2 µs of Postgres CPU a row of the ledger's `jobs`
(5.9 against 3.8 µs a row with ids in order, 8.4 against 6.2 with random ids, 1,000,000 rows in batches of 2,000),
a job ~3 such rows: the largest Postgres cost a job had that no guarantee needs, since copies are rare.

So a fold first inserts plainly (`Unchecked.sql` while `unchecked()` is in force; the caps, whose plain way is more
than their statement without its clause, ask `copies_expected()`). A copy then makes the statement fail with a
unique violation, the whole batch's transaction rolls back — nothing of it is applied, its positions do not move,
no dead letter was sent — and the fold runs the batch again with ON CONFLICT, which it keeps doing while copies were
seen in the last `QUIET_SECONDS` (`Copies`), so a client that retries all the time costs one rolled-back batch a
minute, not one a batch. Everything outside a fold's first try (its retries, a redriven dead letter, tests) takes
ON CONFLICT.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

QUIET_SECONDS = 60.0

# Per task: a batch folded side by side is one task per transaction, each copying its context when it starts.
_UNCHECKED: ContextVar[bool] = ContextVar("first_seen_unchecked", default=False)


def copies_expected() -> bool:
    """Whether an insert must skip copies: yes, but within `unchecked()`. For a fold whose plain way is more than
    its statement without the clause (the caps' counts); the others take `Unchecked.sql`."""
    return not _UNCHECKED.get()


@contextmanager
def unchecked() -> Iterator[None]:
    """Within it, `Unchecked.sql` is the plain INSERT: a copy fails the statement instead of being skipped."""
    token = _UNCHECKED.set(True)
    try:
        yield
    finally:
        _UNCHECKED.reset(token)


@dataclass(frozen=True)
class Unchecked:
    """One INSERT of rows new but for a rare copy, in both forms: `checked` skips copies (its ON CONFLICT …
    DO NOTHING clause, once in it), `plain` is the same statement without that clause."""

    checked: str
    plain: str

    @classmethod
    def of(cls, sql: str, clause: str) -> Unchecked:
        if sql.count(clause) != 1:
            raise ValueError(f"{clause!r} must appear once in the statement")
        return cls(sql, sql.replace(clause, ""))

    @property
    def sql(self) -> str:
        return self.checked if copies_expected() else self.plain


class Copies:
    """Whether a fold should expect copies: for `QUIET_SECONDS` after one was last seen."""

    def __init__(self, quiet_seconds: float = QUIET_SECONDS) -> None:
        self.quiet_seconds = quiet_seconds
        self._until = float("-inf")

    def expected(self) -> bool:
        return time.monotonic() < self._until

    def seen(self) -> None:
        self._until = time.monotonic() + self.quiet_seconds
