"""What a fold dead-letters: a record as it came, or one fact of a batch record as if it had travelled alone."""

from __future__ import annotations

from events.deadletters import DeadLettered
from events.envelope import Envelope, Event, fact_id
from projections.records import Record, Recorded


def dead_letter(record: Record, consumer: str, reason: str) -> DeadLettered:
    payload = (record.value or b"").decode("utf-8", errors="replace")
    key = record.key.decode("utf-8", errors="replace") if record.key else None
    return DeadLettered(
        source=record.topic,
        consumer=consumer,
        reason=reason,
        partition=record.partition,
        offset=record.offset,
        key=key,
        payload=payload,
    )


def alone(item: Recorded[Event]) -> Envelope:
    """The envelope of one fact as if it had travelled alone: what a dead letter of one job of a batch holds, so
    that redriving it applies that job, not the whole batch again."""
    if item.envelope.type == item.event.event_type:
        return item.envelope
    return Envelope.wrap(item.event, producer=item.envelope.producer, event_id=fact_id(item.envelope, item.event),
                         occurred_at=item.envelope.occurred_at)
