"""What a projection is, and the one registry replay and the runners read."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence, Set
from pathlib import Path
from typing import ClassVar

import asyncpg

from events.envelope import Event
from events.types import Channel
from jobmeter.settings import Settings
from projections.records import Recorded


class Projection(ABC):
    """A read model folded from one or more topics into the tables of its own Postgres schema."""

    name: ClassVar[str]  # how operators name it: `jobmeter replay ledger`
    schema: ClassVar[str]  # its live Postgres schema; replay builds `<schema>__rebuild`
    topics: ClassVar[tuple[str, ...]]  # logical topic names (events.topics)
    migrations: ClassVar[Path]
    tables: ClassVar[tuple[str, ...]]  # what `replay --verify` compares, row for row
    emits: ClassVar[bool] = False  # True when apply() writes to the outbox (projections.outbox.emit)
    # Why `replay --swap` must never replace the live tables, where a rebuild cannot stand in for them (their
    # rows record what was done outside: sent to Stripe, charged, emailed). None: swappable.
    not_swappable: ClassVar[str | None] = None
    # How many transactions may fold one batch side by side, each over its own partitions. More than 1 only
    # where every write is a single row-locked statement that commutes (unique inserts, count increments),
    # so transactions over disjoint partitions cannot lose an update; read-then-write folds keep 1.
    side_by_side: ClassVar[int] = 1
    # Records per `apply` (the fold's chunk): small enough that decoding the next chunk overlaps Postgres applying
    # this one. A projection whose apply costs several round trips whatever its size (reads, locks, per-account
    # rules) takes larger chunks, so a batch costs fewer of them.
    chunk: ClassVar[int] = 500
    # The one channel whose jobs it applies, where it applies only those (None: every job, or none). Every consumer
    # of the jobs topic fetches every record, and decoding is most of what a job costs it: a record that certainly
    # holds no job of this channel is passed over unread (events.jobs.holds_no_job_of), its position moving on with
    # the batch's.
    channel: ClassVar[Channel | None] = None
    # The accounts whose jobs it never applies, as far as it has learnt them (`projections.account_view.Elsewhere`:
    # another billing model's): a record of their jobs is passed over unread too (events.jobs.jobs_account).
    billed_elsewhere: Set[str] = frozenset()

    def configured(self, settings: Settings) -> Projection:
        """This projection as the process running it configures it. Most read no settings: they return self;
        one that does returns a copy built from `settings`, never from the process-wide ones, so a sandbox or
        a replay folds with exactly the settings it was given."""
        return self

    @abstractmethod
    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        """Fold a batch into the tables, set-based; runs inside the transaction that also moves positions."""

