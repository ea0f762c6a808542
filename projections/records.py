"""A decoded event as a projection receives it, with where it sits in the log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Generic, NamedTuple, Protocol, TypeVar

from events.envelope import Envelope, Event
from projections.positions import Positioned

E = TypeVar("E", bound=Event)


class Record(Positioned, Protocol):
    """The parts of a Kafka record we use. aiokafka's ConsumerRecord is one, and is folded as it comes: copying
    each into a RawRecord was ~2 % of a job consumer's samples (py-spy at 10,000 jobs/s, issue 18)."""

    @property
    def timestamp(self) -> int: ...  # milliseconds since the epoch, the broker's log time
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record made here rather than read from Kafka: a dead letter redriven, a test's."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


class Recorded(NamedTuple, Generic[E]):
    """An event in the log: what happened (`event`), its envelope, and its position.

    A tuple rather than a frozen dataclass: one is made per record and consumer, and a frozen dataclass's
    `__init__` (a `object.__setattr__` per field) took 2.5 times as long (timeit; issue 18)."""

    topic: str
    partition: int
    offset: int
    logged_at: datetime
    envelope: Envelope
    event: E


@lru_cache(maxsize=4096)
def logged_at(timestamp_ms: int) -> datetime:
    # Records of one producer batch share their millisecond: remembering the last few thousand made this a
    # quarter of its cost, where it had been a tenth of a fold's decoding (py-spy, issue 18).
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
