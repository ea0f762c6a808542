"""What could not be parsed or applied, with the reason: nothing bad disappears silently."""

from __future__ import annotations

import uuid
from typing import ClassVar

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
