"""What could not be parsed or applied, with the reason: nothing bad disappears silently."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Literal

from pydantic import Field

from events.envelope import Event, natural_event_id


def fact_of_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Upcast a v1 DeadLettered, from before records carried several facts: it is about its whole record."""
    return {**data, "fact": None}


class DeadLettered(Event):
    """`fact` (v2): a record can carry several facts (`Event.facts`: the jobs of a `JobsCompleted`), and one of them
    may be refused alone; its letter names it, so two refused jobs of one record are two letters, not one."""

    event_type: ClassVar[str] = "DeadLettered"
    version: ClassVar[int] = 2
    topic: ClassVar[str] = "deadletters"

    source: str = Field(description="topic, or the HTTP route that refused it")
    consumer: str
    reason: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    payload: str = Field(description="the original bytes, as UTF-8 with invalid bytes replaced")
    fact: uuid.UUID | None = Field(
        default=None, description="the event id of the one fact of the record refused, alone in `payload`; "
        "none: the whole record")

    def natural_id(self) -> uuid.UUID | None:
        # The same record (or fact of it) refused twice by the same consumer (a redelivery) is one dead letter.
        if self.partition is None or self.offset is None:
            return None
        parts = ("dead", self.consumer, self.source, str(self.partition), str(self.offset))
        return natural_event_id(*parts, str(self.fact)) if self.fact else natural_event_id(*parts)

    def partition_key(self) -> str:
        return self.key or self.source


class DeadLetterRedriven(Event):
    """A dead letter applied again through the consumer that refused it (`jobmeter deadletters redrive`), and what
    came of it: kept beside the letter, so the list shows it and a letter applied at last is off the doctor's list."""

    event_type: ClassVar[str] = "DeadLetterRedriven"
    topic: ClassVar[str] = "deadletters"

    letter_id: uuid.UUID = Field(description="the DeadLettered event's id")
    consumer: str
    outcome: Literal["applied", "refused"]
    detail: str = Field(default="", description="why it was refused again")

    def partition_key(self) -> str:
        return str(self.letter_id)
