"""Folding a batch of Kafka records into a projection: exactly once in effect.

Lock the positions, drop what was already applied, decode and apply the rest and move the positions, all in one
Postgres transaction. What cannot be decoded or applied goes to the dead-letter sink before that
transaction commits, so it is never lost (at worst dead-lettered twice after a crash).

A record a newer reader could read (a newer version, an unknown type: `NotYetReadable`) is never dead-lettered:
its partition is held there — neither it nor anything after it on that partition is applied, and the position
stays before it — while the other partitions go on (`projections.holds`). The consumer pauses the partition; a
reader that knows the record, after an upgrade, starts from that position and applies it all once.

Speed comes from overlap, never from weaker guarantees: the next chunk is decoded while Postgres applies the one
in flight, and a projection that declares it safe (`Projection.side_by_side`) folds a batch as several such
transactions at once, split by partition, each moving only its own partitions' positions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from itertools import chain
from typing import NamedTuple, cast

import asyncpg
import structlog

from events.codec import DecodeError, EventRegistry, NotYetReadable
from events.deadletters import DeadLettered
from events.envelope import Event
from events.jobs import holds_no_job_of, jobs_account
from events.registry import REGISTRY
from jobmeter import metrics
from projections import positions
from projections.db import transaction
from projections.first_seen import Copies, unchecked
from projections.holds import Holds
from projections.letters import alone, dead_letter
from projections.projection import Projection
from projections.records import RawRecord, Record, Recorded, logged_at

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


class FoldOutcome(NamedTuple):
    applied: int
    skipped: int
    dead: int  # dead letters: one per record, or per job for a job of a batch record applied alone
    held: int = 0  # records not applied because their partition is held (the held record and those after it)


def by_partition(records: Sequence[Record], groups: int) -> list[list[Record]]:
    """The records split into at most `groups` lists, whole partitions each, of about equal size, each in log
    order."""
    if groups <= 1:
        return [list(records)]
    partitions = positions.partitioned(records)
    split: list[list[Record]] = [[] for _ in range(min(groups, len(partitions)))]
    for key in sorted(partitions, key=lambda k: -len(partitions[k])):
        min(split, key=len).extend(partitions[key])
    return split


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
        chunk: int | None = None,
        contiguous: bool = True,
    ) -> None:
        self.projection = projection
        self.pool = pool
        self.schema = schema or projection.schema
        self.dead_letters = dead_letters
        self.registry = registry
        self.take_swap_lock = take_swap_lock
        self.chunk = chunk or projection.chunk  # records per apply (`Projection.chunk`)
        self.contiguous = contiguous  # False for a rebuild that starts part-way (`replay --since`)
        self.held = Holds(projection.name)
        self.copies = Copies()  # whether its inserts skip copies of rows already there (projections.first_seen)

    def decode(self, records: Sequence[Record]) -> tuple[list[Recorded[Event]], list[DeadLettered]]:
        good: list[Recorded[Event]] = []
        dead: list[DeadLettered] = []
        held, channel, elsewhere = self.held, self.projection.channel, self.projection.billed_elsewhere
        for record in records:
            if held and held.covers(record):
                continue  # behind a held record of its partition: applied after it, once a reader can
            try:
                if record.value is None:
                    raise DecodeError("empty record value")
                if ((channel is not None and holds_no_job_of(record.value, channel))
                        or (elsewhere and jobs_account(record.value) in elsewhere)):
                    continue  # nothing in it for this projection: another channel's jobs, or another model's account's
                envelope, event = self.registry.decode(record.value)
            except NotYetReadable as error:
                self.held.hold(record, error.reason)
                continue
            except DecodeError as error:
                dead.append(dead_letter(record, self.projection.name, error.reason))
                continue
            at = logged_at(record.timestamp)
            good.extend([Recorded(record.topic, record.partition, record.offset, at, envelope, fact)
                         for fact in event.facts()])
        return good, dead

    async def fold(self, records: Sequence[Record]) -> FoldOutcome:
        started = time.perf_counter()
        groups = by_partition(records, self.projection.side_by_side) if self.projection.side_by_side > 1 else []
        if len(groups) <= 1:
            outcome = await self._fold_group(records)
        else:
            # Each group is its own transaction with its own positions: one may commit while another fails, and
            # the retry skips what was committed. Every group ends before an error propagates.
            results = await asyncio.gather(*(self._fold_group(g) for g in groups), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            outcomes = cast(list[FoldOutcome], results)
            outcome = FoldOutcome(*(sum(o[i] for o in outcomes) for i in range(4)))
        metrics.BATCH_SECONDS.labels(self.projection.name).observe(time.perf_counter() - started)
        return outcome

    async def _fold_group(self, records: Sequence[Record]) -> FoldOutcome:
        if not records:
            return FoldOutcome(0, 0, 0)
        name = self.projection.name
        try:
            fresh, dead, held = await self._fold_expecting_no_copies(records)
        except DATA_ERRORS as error:
            # The whole transaction rolled back: nothing of it is applied and no dead letter was sent.
            log.warning("batch failed, isolating records", projection=name, error=str(error))
            fresh, dead, held = await self._fold(records, careful=True)
        # In records: one whose job was dead-lettered alone (a batch's, `Event.facts`) is not counted as applied.
        applied = len(fresh) - len({(letter.source, letter.partition, letter.offset) for letter in dead}) - held
        metrics.EVENTS_APPLIED.labels(name).inc(applied)
        metrics.EVENTS_SKIPPED.labels(name).inc(len(records) - len(fresh))
        return FoldOutcome(applied=applied, skipped=len(records) - len(fresh), dead=len(dead), held=held)

    async def _fold_expecting_no_copies(
        self, records: Sequence[Record]
    ) -> tuple[list[Record], list[DeadLettered], int]:
        if not self.copies.expected():
            try:
                with unchecked():
                    return await self._fold(records, careful=False)
            except asyncpg.UniqueViolationError as error:  # rolled back whole: fold it again, skipping copies
                log.info("copies seen, inserting with ON CONFLICT for a while", projection=self.projection.name,
                         error=str(error))
                self.copies.seen()
        return await self._fold(records, careful=False)

    async def _fold(
        self, records: Sequence[Record], *, careful: bool
    ) -> tuple[list[Record], list[DeadLettered], int]:
        holds_before = dict(self.held)
        try:
            return await self._fold_once(records, careful=careful)
        except BaseException:
            self.held.restore(holds_before)  # rolled back: the retry decides again, from the same records
            raise

    async def _fold_once(
        self, records: Sequence[Record], *, careful: bool
    ) -> tuple[list[Record], list[DeadLettered], int]:
        runs = positions.partitioned(records)
        async with transaction(self.pool, self.schema) as conn:
            if self.take_swap_lock:
                # Shared with other consumers; `replay --swap` takes it exclusively for the moment of the swap.
                await conn.execute("SELECT pg_advisory_xact_lock_shared(hashtext($1))", self.projection.name)
            stored = await positions.lock(conn, list(runs))
            if self.contiguous and not careful:  # the careful rerun sees the same records: reported once
                self._report_gaps(positions.gaps(runs, stored))
            unread = positions.unread(runs, stored)
            fresh = list(chain.from_iterable(unread.values()))
            dead = await (self._apply_isolating(conn, fresh) if careful else self._apply_pipelined(conn, fresh))
            if dead:
                await self._send_dead(dead)
            # A held partition's position stays before its held record, whatever came after it in the batch.
            kept = self.held.before(unread)
            await positions.advance(conn, positions.next_offsets(kept))
        return fresh, dead, len(fresh) - sum(map(len, kept.values()))

    async def _apply_pipelined(self, conn: asyncpg.Connection, fresh: list[Record]) -> list[DeadLettered]:
        """Apply chunk after chunk in this transaction, decoding the next chunk while Postgres works on the one
        in flight: decoding and Postgres are the two halves of a fold's time, so they overlap instead of
        adding up. No savepoints: a data error aborts the transaction and `fold` retries in isolation."""
        dead: list[DeadLettered] = []
        in_flight: asyncio.Future[None] | None = None
        try:
            for start in range(0, len(fresh), self.chunk):
                good, bad = self.decode(fresh[start : start + self.chunk])
                dead += bad
                if in_flight is not None:
                    await in_flight
                    in_flight = None
                if good:
                    in_flight = asyncio.ensure_future(self.projection.apply(conn, good))
                    await asyncio.sleep(0)  # the apply sends its first statement before the next decode
            if in_flight is not None:
                await in_flight
                in_flight = None
        finally:
            if in_flight is not None:  # something failed while a statement was out: let it end before rollback
                in_flight.cancel()
                await asyncio.wait([in_flight])
                if not in_flight.cancelled():
                    in_flight.exception()  # retrieved: the error that matters is the one propagating
        return dead

    async def _apply_isolating(self, conn: asyncpg.Connection, fresh: list[Record]) -> list[DeadLettered]:
        """After a data error: apply chunk by chunk, each in a savepoint; in a chunk that fails, record by
        record, dead-lettering the records the data makes fail."""
        dead: list[DeadLettered] = []
        for start in range(0, len(fresh), self.chunk):
            good, bad = self.decode(fresh[start : start + self.chunk])
            dead += bad
            if not good:
                continue
            try:
                async with conn.transaction():  # a savepoint: a failure here leaves the outer transaction usable
                    await self.projection.apply(conn, good)
                continue
            except DATA_ERRORS:
                pass
            for item in good:
                try:
                    async with conn.transaction():
                        await self.projection.apply(conn, [item])
                except DATA_ERRORS as error:
                    raw = RawRecord(item.topic, item.partition, item.offset, 0, None, None)
                    letter = dead_letter(raw, self.projection.name, f"could not apply: {error}")
                    envelope = alone(item)
                    fact = None if envelope is item.envelope else envelope.event_id
                    dead.append(letter.model_copy(update={"payload": envelope.model_dump_json(), "fact": fact}))
        return dead

    async def reapply(self, record: Record) -> str | None:
        """Apply one record again, outside the positions: a dead letter redriven after its cause was fixed. None
        when it was applied, else why it was refused again. As safe to repeat as a redelivery is, because every
        projection applies a fact by its identity (a job by (api, job_id), a Stripe event by its id, …) rather than
        by its position; the positions are left alone, since the log has moved past the record."""
        try:
            envelope, event = self.registry.decode(record.value or b"")
        except DecodeError as error:
            return error.reason
        at = logged_at(record.timestamp)
        items = [Recorded(record.topic, record.partition, record.offset, at, envelope, fact) for fact in event.facts()]
        try:
            async with transaction(self.pool, self.schema) as conn:
                if self.take_swap_lock:
                    await conn.execute("SELECT pg_advisory_xact_lock_shared(hashtext($1))", self.projection.name)
                await self.projection.apply(conn, items)
        except DATA_ERRORS as error:
            return f"could not apply: {error}"
        return None

    def _report_gaps(self, found: dict[positions.Partition, tuple[int, int]]) -> None:
        """Records that never reached this projection cannot be folded now; say so loudly, and fold on."""
        for (topic, partition), (expected, first) in found.items():
            metrics.OFFSETS_SKIPPED.labels(self.projection.name).inc(first - expected)
            log.error(
                "offsets missing from the log: events never folded", projection=self.projection.name, topic=topic,
                partition=partition, expected_offset=expected, first_offset=first,
            )

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
