"""What a projection is, and the one registry replay and the runners read."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import asyncpg

from events.envelope import Event
from projections.records import Recorded


class Projection(ABC):
    """A read model folded from one or more topics into the tables of its own Postgres schema."""

    name: ClassVar[str]  # how operators name it: `jobmeter replay usage-ledger`
    schema: ClassVar[str]  # its live Postgres schema; replay builds `<schema>__rebuild`
    topics: ClassVar[tuple[str, ...]]  # logical topic names (events.topics)
    migrations: ClassVar[Path]
    tables: ClassVar[tuple[str, ...]]  # what `replay --verify` compares, row for row
    emits: ClassVar[bool] = False  # True when apply() writes to the outbox (projections.outbox.emit)

    @abstractmethod
    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        """Fold a batch into the tables, set-based; runs inside the transaction that also moves positions."""

