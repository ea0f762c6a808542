"""Dead letters applied again, after a fix, through the consumer that refused them; each outcome recorded.

`jobmeter deadletters redrive` reads the letter's record back from the letter (the original bytes), applies it
through the same projection (`Folder.reapply`: no positions move, and the projection applies a fact by its identity,
so a job redriven twice still counts once), and puts a `DeadLetterRedriven` with the outcome beside the letter on the
dead-letter topic. A letter applied at last is off the doctor's list; one refused again keeps its place, with why.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from events.deadletters import DeadLetterRedriven
from projections import catalog
from projections.fold import Folder
from projections.records import RawRecord
from services.platform.deadletters import DeadLetter
from services.platform.resources import Resources


@dataclass(frozen=True)
class Redriven:
    letter: DeadLetter
    applied: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.letter.id, "consumer": self.letter.consumer, "applied": self.applied, "detail": self.detail}


def _refusal(letter: DeadLetter) -> str | None:
    """Why this letter cannot go through a consumer at all, if it cannot."""
    if letter.partition is None or letter.offset is None:
        return f"refused at {letter.source} before it reached the log: the sender was told, there is nothing to apply"
    try:
        catalog.get(letter.consumer)
    except KeyError:
        return f"no consumer {letter.consumer!r} to apply it" if letter.consumer else "not a readable dead letter"
    return None


async def redrive(res: Resources, letter: DeadLetter) -> Redriven:
    refused = _refusal(letter)
    if refused is not None:
        return Redriven(letter, False, refused)  # not recorded: it names no consumer that could ever apply it
    assert letter.partition is not None and letter.offset is not None
    projection = catalog.get(letter.consumer).configured(res.settings)
    record = RawRecord(letter.source, letter.partition, letter.offset, int(letter.at.timestamp() * 1000),
                       letter.key.encode() if letter.key else None, letter.payload.encode())
    reason = await Folder(projection, res.pool_for(projection.name)).reapply(record)
    outcome = DeadLetterRedriven(letter_id=uuid.UUID(letter.id), consumer=letter.consumer,
                                 outcome="applied" if reason is None else "refused", detail=reason or "")
    await res.publisher.publish(outcome)
    return Redriven(letter, reason is None, reason or "")
