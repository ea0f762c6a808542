"""A decoded event as a projection receives it, with where it sits in the log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Generic, TypeVar

from events.envelope import Envelope, Event

E = TypeVar("E", bound=Event)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """The parts of a Kafka record we use; aiokafka's ConsumerRecord fits it."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # milliseconds since the epoch, the broker's log time
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(cls, record: Any) -> RawRecord:
        return cls(record.topic, record.partition, record.offset, record.timestamp, record.key, record.value)


@dataclass(frozen=True, slots=True)
class Recorded(Generic[E]):
    """An event in the log: what happened (`event`), its envelope, and its position."""

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
