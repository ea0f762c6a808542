"""What could not be parsed or applied, with the reason: nothing bad disappears silently."""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from pydantic import Field

from events.envelope import Event, natural_event_id


class DeadLettered(Event):
    event_type: ClassVar[str] = "DeadLettered"
    topic: ClassVar[str] = "deadletters"

    source: str = Field(description="topic, or the HTTP route that refused it")
    consumer: str
    reason: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    payload: str = Field(description="the original bytes, as UTF-8 with invalid bytes replaced")

    def natural_id(self) -> uuid.UUID | None:
        # The same record refused twice by the same consumer (a redelivery) is one dead letter.
        if self.partition is None or self.offset is None:
            return None
        return natural_event_id("dead", self.consumer, self.source, str(self.partition), str(self.offset))

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
