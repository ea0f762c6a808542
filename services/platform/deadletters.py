"""Reading the dead-letter topic back: what consumers could not parse or apply, with the reason, newest first.

The topic is read from its start to its end offsets as of the call (never "until nothing came for a while"), by a
plain consumer that joins no group. A letter redelivered after a crash shares its event id with the first one
(`DeadLettered.natural_id`) and is shown once. A redrive's outcome (`DeadLetterRedriven`, on the same topic) is
shown with its letter: the last one counts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from events.codec import DecodeError
from events.deadletters import DeadLettered, DeadLetterRedriven
from events.registry import REGISTRY
from events.topics import Topics
from projections.log import LogReader
from projections.records import Record, logged_at


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
    redriven: str | None = None  # the last redrive: "applied", or "refused: <why>"
    redriven_at: datetime | None = None

    @property
    def settled(self) -> bool:
        """Applied at last by a redrive: nothing is left to do about it."""
        return self.redriven == "applied"

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id, "consumer": self.consumer, "source": self.source, "partition": self.partition,
            "offset": self.offset, "reason": self.reason, "at": self.at.isoformat(), "redriven": self.redriven,
            "redriven_at": self.redriven_at.isoformat() if self.redriven_at else None,
        }

    def detail(self) -> dict[str, Any]:
        return {**self.summary(), "key": self.key, "payload": self.payload}


def letter_of(record: Record) -> DeadLetter | DeadLetterRedriven:
    """A dead-letter record as a DeadLetter (one that is not a readable DeadLettered is shown, not hidden), or the
    outcome of a redrive."""
    logged = (record.timestamp, record.partition, record.offset)
    raw = record.value or b""
    try:
        envelope, event = REGISTRY.decode(raw)
        if isinstance(event, DeadLetterRedriven):
            return event
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


async def all_dead_letters(bootstrap_servers: str, topics: Topics) -> list[DeadLetter]:
    """Every dead letter once, in log order, each with its last redrive's outcome."""
    letters: dict[str, DeadLetter] = {}
    outcomes: dict[str, tuple[str, datetime]] = {}
    async with LogReader(bootstrap_servers) as log:
        async for batch in log.read_to_end([topics.deadletters]):
            for record in batch:
                found = letter_of(record)
                if isinstance(found, DeadLetterRedriven):
                    said = found.outcome if found.outcome == "applied" else f"refused: {found.detail}"
                    outcomes[str(found.letter_id)] = (said, logged_at(record.timestamp))
                else:
                    # Redeliveries share the partition key, so the first one read is the first one written.
                    letters.setdefault(found.id, found)
    return [replace(letter, redriven=outcomes[letter.id][0], redriven_at=outcomes[letter.id][1])
            if letter.id in outcomes else letter for letter in letters.values()]


async def list_dead_letters(
    bootstrap_servers: str, topics: Topics, *, consumer: str | None = None, limit: int = 50
) -> list[DeadLetter]:
    """The newest `limit` dead letters (of one consumer), newest first."""
    letters = [letter for letter in await all_dead_letters(bootstrap_servers, topics)
               if consumer is None or letter.consumer == consumer]
    return sorted(letters, key=lambda letter: letter.logged, reverse=True)[:limit]


class NotFound(LookupError):
    """No dead letter, or more than one, answers to the id asked for."""


async def find_dead_letter(bootstrap_servers: str, topics: Topics, id_: str) -> DeadLetter:
    """The dead letter with this id, or the one whose id starts with it."""
    matches: list[DeadLetter] = []
    for letter in await all_dead_letters(bootstrap_servers, topics):
        if letter.id == id_:
            return letter
        if letter.id.startswith(id_):
            matches.append(letter)
    if len(matches) == 1:
        return matches[0]
    raise NotFound(f"{len(matches)} dead letters have an id starting with {id_!r}" if matches
                   else f"no dead letter {id_!r}")
