"""The dead-letter page: what the consumers could not read or apply, and applying one again once its cause is fixed.

The same reads and the same redrive as `jobmeter deadletters list | redrive` (`services.platform.deadletters`,
`services.platform.redrive`): the page only shapes them into rows.
"""

from __future__ import annotations

from typing import Any

from services.platform.deadletters import find_dead_letter, list_dead_letters
from services.platform.redrive import Redriven, redrive
from services.platform.resources import Resources

LIMIT = 200  # the newest; the CLI lists any number


async def rows(res: Resources, consumer: str | None = None, limit: int = LIMIT) -> list[dict[str, Any]]:
    """The newest dead letters (of one consumer), newest first, each with whether a redrive could still help: one
    applied at last, or refused before it reached the log, has nothing left to redrive."""
    letters = await list_dead_letters(res.settings.kafka_bootstrap_servers, res.topics, consumer=consumer,
                                      limit=limit)
    return [
        {**letter.summary(), "redrivable": not letter.settled and letter.partition is not None,
         "record": letter.source if letter.partition is None else f"{letter.source}/{letter.partition}@{letter.offset}"}
        for letter in letters
    ]


async def redrive_one(res: Resources, letter_id: str) -> Redriven:
    """Apply one dead letter again through the consumer that refused it (by id, or the start of one), recording
    the outcome beside it; NotFound when no single letter answers to the id, LogError when the topic is unreadable."""
    letter = await find_dead_letter(res.settings.kafka_bootstrap_servers, res.topics, letter_id)
    return await redrive(res, letter)
