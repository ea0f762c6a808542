"""Folding a batch of Kafka records into a projection: exactly once in effect.

Decode, lock the positions, drop what was already applied, apply the rest and move the positions, all in one
Postgres transaction. What cannot be decoded or applied goes to the dead-letter sink before that
transaction commits, so it is never lost (at worst dead-lettered twice after a crash).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg
import structlog

from events.codec import DecodeError, EventRegistry
from events.deadletters import DeadLettered
from events.envelope import Event
from events.registry import REGISTRY
from jobmeter import metrics
from projections import positions
from projections.db import transaction
from projections.projection import Projection
from projections.records import RawRecord, Recorded, logged_at

log = structlog.get_logger(__name__)

DeadLetterSink = Callable[[Sequence[DeadLettered]], Awaitable[None]]

# Errors caused by the data itself: retrying cannot help, so the record is dead-lettered. Not among them:
# connection errors, and schema errors (a missing table or column, code deployed before its migration) —
# those propagate and the batch is retried, rather than emptying the log into the dead-letter topic.
DATA_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    ValueError,
)


@dataclass(frozen=True)
class FoldOutcome:
    applied: int
    skipped: int
    dead: int


def dead_letter(record: RawRecord, consumer: str, reason: str) -> DeadLettered:
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


class Folder:
    def __init__(
        self,
        projection: Projection,
        pool: asyncpg.Pool,
        *,
        schema: str | None = None,
        dead_letters: DeadLetterSink | None = None,
        registry: EventRegistry = REGISTRY,
        take_swap_lock: bool = True,
    ) -> None:
        self.projection = projection
        self.pool = pool
        self.schema = schema or projection.schema
        self.dead_letters = dead_letters
        self.registry = registry
        self.take_swap_lock = take_swap_lock

    def decode(self, records: Sequence[RawRecord]) -> tuple[list[Recorded[Event]], list[DeadLettered]]:
        good: list[Recorded[Event]] = []
        dead: list[DeadLettered] = []
        for record in records:
            try:
                if record.value is None:
                    raise DecodeError("empty record value")
                envelope, event = self.registry.decode(record.value)
            except DecodeError as error:
                dead.append(dead_letter(record, self.projection.name, error.reason))
                continue
            good.append(
                Recorded(
                    record.topic, record.partition, record.offset, logged_at(record.timestamp), envelope, event
                )
            )
        return good, dead

    async def fold(self, records: Sequence[RawRecord]) -> FoldOutcome:
        if not records:
            return FoldOutcome(0, 0, 0)
        started = time.perf_counter()
        name = self.projection.name
        async with transaction(self.pool, self.schema) as conn:
            if self.take_swap_lock:
                # Shared with other consumers; `replay --swap` takes it exclusively for the moment of the swap.
                await conn.execute("SELECT pg_advisory_xact_lock_shared(hashtext($1))", name)
            stored = await positions.lock(conn, [(r.topic, r.partition) for r in records])
            fresh = positions.unread(records, stored)
            good, dead = self.decode(fresh)
            dead += await self._apply(conn, good)
            if dead:
                await self._send_dead(dead)
            await positions.advance(conn, positions.next_offsets(fresh))
        metrics.EVENTS_APPLIED.labels(name).inc(len(fresh) - len(dead))
        metrics.EVENTS_SKIPPED.labels(name).inc(len(records) - len(fresh))
        metrics.BATCH_SECONDS.labels(name).observe(time.perf_counter() - started)
        return FoldOutcome(applied=len(fresh) - len(dead), skipped=len(records) - len(fresh), dead=len(dead))

    async def _apply(self, conn: asyncpg.Connection, good: list[Recorded[Event]]) -> list[DeadLettered]:
        """Apply the batch; if the data makes it fail, apply record by record and dead-letter the culprits."""
        if not good:
            return []
        try:
            async with conn.transaction():  # a savepoint: a failure here leaves the outer transaction usable
                await self.projection.apply(conn, good)
            return []
        except DATA_ERRORS as error:
            log.warning("batch failed, isolating records", projection=self.projection.name, error=str(error))
        dead: list[DeadLettered] = []
        for item in good:
            try:
                async with conn.transaction():
                    await self.projection.apply(conn, [item])
            except DATA_ERRORS as error:
                raw = RawRecord(item.topic, item.partition, item.offset, 0, None, None)
                letter = dead_letter(raw, self.projection.name, f"could not apply: {error}")
                dead.append(letter.model_copy(update={"payload": item.envelope.model_dump_json()}))
        return dead

    async def _send_dead(self, dead: list[DeadLettered]) -> None:
        metrics.DEAD_LETTERS.labels(self.projection.name).inc(len(dead))
        for letter in dead:
            log.warning(
                "dead-lettered", consumer=letter.consumer, topic=letter.source, offset=letter.offset,
                reason=letter.reason,
            )
        if self.dead_letters is None:
            raise RuntimeError(f"{len(dead)} record(s) need the dead-letter topic, but no sink is configured")
        await self.dead_letters(dead)
