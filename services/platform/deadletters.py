"""Reading the dead-letter topic back: what consumers could not parse or apply, with the reason, newest first.

The topic is read from its start to its end offsets as of the call (never "until nothing came for a while"), by a
plain consumer that joins no group. A letter redelivered after a crash shares its event id with the first one
(`DeadLettered.natural_id`) and is shown once.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events.codec import DecodeError
from events.deadletters import DeadLettered
from events.registry import REGISTRY
from events.topics import Topics
from projections.log import LogReader
from projections.records import RawRecord, logged_at


@dataclass(frozen=True)
class DeadLetter:
    id: str  # the DeadLettered event id; "partition:offset" on the dead-letter topic for a record that is none
    consumer: str
    source: str  # the topic the record was read from (or the HTTP route that refused it)
    partition: int | None
    offset: int | None
    reason: str
    at: datetime  # when it was dead-lettered
    key: str | None
    payload: str
    logged: tuple[int, int, int]  # (log time ms, partition, offset) on the dead-letter topic: the newest-first order

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id, "consumer": self.consumer, "source": self.source, "partition": self.partition,
            "offset": self.offset, "reason": self.reason, "at": self.at.isoformat(),
        }

    def detail(self) -> dict[str, Any]:
        return {**self.summary(), "key": self.key, "payload": self.payload}


def letter_of(record: RawRecord) -> DeadLetter:
    """A dead-letter record as a DeadLetter; one that is not a readable DeadLettered is shown, not hidden."""
    logged = (record.timestamp, record.partition, record.offset)
    raw = record.value or b""
    try:
        envelope, event = REGISTRY.decode(raw)
        if not isinstance(event, DeadLettered):
            raise DecodeError(f"a {envelope.type}, not a DeadLettered")
    except DecodeError as error:
        return DeadLetter(
            id=f"{record.partition}:{record.offset}", consumer="", source=record.topic, partition=record.partition,
            offset=record.offset, reason=f"unreadable dead letter: {error.reason}", at=logged_at(record.timestamp),
            key=None, payload=raw.decode("utf-8", errors="replace"), logged=logged,
        )
    return DeadLetter(
        id=str(envelope.event_id), consumer=event.consumer, source=event.source, partition=event.partition,
        offset=event.offset, reason=event.reason, at=envelope.occurred_at, key=event.key, payload=event.payload,
        logged=logged,
    )


async def _letters(bootstrap_servers: str, topics: Topics) -> AsyncIterator[DeadLetter]:
    seen: set[str] = set()
    async with LogReader(bootstrap_servers) as log:
        async for batch in log.read_to_end([topics.deadletters]):
            for record in batch:
                letter = letter_of(record)
                # Redeliveries share the partition key, so the first one read is the first one written.
                if letter.id not in seen:
                    seen.add(letter.id)
                    yield letter


async def list_dead_letters(
    bootstrap_servers: str, topics: Topics, *, consumer: str | None = None, limit: int = 50
) -> list[DeadLetter]:
    """The newest `limit` dead letters (of one consumer), newest first; only those are kept while reading."""
    newest: list[tuple[tuple[int, int, int], DeadLetter]] = []
    async for letter in _letters(bootstrap_servers, topics):
        if consumer is not None and letter.consumer != consumer:
            continue
        if len(newest) < limit:
            heapq.heappush(newest, (letter.logged, letter))
        elif newest and letter.logged > newest[0][0]:
            heapq.heapreplace(newest, (letter.logged, letter))
    return [letter for _, letter in sorted(newest, key=lambda item: item[0], reverse=True)]


class NotFound(LookupError):
    """No dead letter, or more than one, answers to the id asked for."""


async def find_dead_letter(bootstrap_servers: str, topics: Topics, id_: str) -> DeadLetter:
    """The dead letter with this id, or the one whose id starts with it."""
    matches: list[DeadLetter] = []
    async for letter in _letters(bootstrap_servers, topics):
        if letter.id == id_:
            return letter
        if letter.id.startswith(id_):
            matches.append(letter)
    if len(matches) == 1:
        return matches[0]
    raise NotFound(f"{len(matches)} dead letters have an id starting with {id_!r}" if matches
                   else f"no dead letter {id_!r}")
