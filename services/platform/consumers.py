"""A projection as a FastStream subscriber: a consumer group, batches, positions kept in Postgres.

FastStream's Kafka default (ACK_FIRST) commits before the handler runs, i.e. at most once. Here the truth is
the positions table written with the rows; the Kafka commit after success (NACK_ON_ERROR) is only a hint,
and on every partition assignment the consumer seeks to the stored positions. A partition the fold holds (a record
of a newer version) is paused where it is (`hold_partitions`).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition
from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from projections import positions
from projections.db import transaction
from projections.fold import Folder
from projections.records import Record
from services.platform.transient import TRANSIENT

log = structlog.get_logger(__name__)

# A dynamic member killed outright holds its partitions until the group gives up on it: the broker's minimum
# session keeps that pause after a crash short.
DYNAMIC_SESSION_TIMEOUT_MS = 6_000
# A static member (KIP-345) sends no LeaveGroup when it stops, and one rejoining under the same instance id takes
# its partitions back without a rebalance, as long as it is back within the session timeout: that timeout is the
# window a restart (stop, start, migrate, join) must fit in. The price: a static member that dies for good leaves
# its partitions unread for that long before the group gives them to the others. Kafka's own default since 3.0
# (KIP-735); the broker's group.max.session.timeout.ms (30 min by default) must allow it.
STATIC_SESSION_TIMEOUT_MS = 45_000

FolderOf = Callable[[], Folder]


class SeekToStoredPositions(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, folder_of: FolderOf) -> None:
        self.folder_of = folder_of
        self.subscriber: Any = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            folder = self.folder_of()
        except RuntimeError:
            return  # the runtime is closing (or not open yet): no holds to forget
        folder.held.release((tp.topic, tp.partition) for tp in revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if not assigned or self.subscriber is None or self.subscriber.consumer is None:
            return
        folder = self.folder_of()
        async with transaction(folder.pool, folder.schema) as conn:
            stored = await positions.read_all(conn)
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition), 0)
            self.subscriber.consumer.seek(tp, offset)
        log.info("partitions assigned", projection=folder.projection.name, partitions=len(assigned))


async def _records_of(message: Any) -> Any:
    """Hand the handler the raw records: the fold decodes them itself and dead-letters what it can't."""
    return message.raw_message


def group_id(prefix: str, name: str) -> str:
    return f"{prefix}jobmeter.{name}"


class Membership(NamedTuple):
    group_instance_id: str | None
    session_timeout_ms: int


def membership(instance_id: str | None, name: str) -> Membership:
    """How a consumer belongs to its group: static (one stable id per process and consumer) when this process
    has an instance id, else dynamic."""
    if instance_id is None:
        return Membership(None, DYNAMIC_SESSION_TIMEOUT_MS)
    return Membership(f"{instance_id}.{name}", STATIC_SESSION_TIMEOUT_MS)


def mount_projection(
    broker: KafkaBroker,
    folder_of: FolderOf,
    *,
    topics: list[str],
    group: str,
    max_records: int,
    timeout_ms: int,
    title: str,
    instance_id: str | None = None,
) -> Any:
    """Declare the projection's batch subscriber; `folder_of` gives the Folder once the process is open. With an
    `instance_id`, the subscriber is a static member of its group (`membership`)."""
    listener = SeekToStoredPositions(folder_of)
    member = membership(instance_id, title)
    subscriber = broker.subscriber(
        *topics,
        group_id=group,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=timeout_ms,
        auto_offset_reset="earliest",
        group_instance_id=member.group_instance_id,
        session_timeout_ms=member.session_timeout_ms,
        heartbeat_interval_ms=2000,
        # A fetch the broker holds open for partitions already drained blocks the next fetch to that broker; at
        # the 500 ms default, a consumer catching up stalled that long now and then (measured by bench ledger).
        fetch_max_wait_ms=100,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        listener=listener,
        decoder=_records_of,
        title=f"{title}:fold",
    )
    listener.subscriber = subscriber

    @subscriber
    async def fold(records: Any) -> None:  # aiokafka's ConsumerRecords (`_records_of`); Any: FastStream checks nothing
        # In a context of its own: FastStream's holds this batch's message (every record of it) while the handler
        # runs, and every timer the fold schedules keeps a copy of the context it was scheduled in, so the batch
        # with it — asyncpg's statement-cache expiry (300 s) and its command timeouts (60 s; once cancelled, one
        # may wait in the loop until due, context and all). That kept whole batches: +19 MB for the meter at
        # 2,000 jobs/s, more behind a backlog, where batches are larger (issue 18).
        await asyncio.create_task(_fold_retrying(folder_of, records), context=contextvars.Context())
        hold_partitions(subscriber.consumer, folder_of())

    return subscriber


async def _fold_retrying(folder_of: FolderOf, batch: Sequence[Record]) -> None:
    async for attempt in AsyncRetrying(
        # A restarting server is worth a few tries in place before the batch goes back to Kafka.
        retry=retry_if_exception_type(TRANSIENT),
        wait=wait_exponential_jitter(multiplier=0.2, max=5),
        stop=stop_after_attempt(6),
        reraise=True,
    ):
        with attempt:
            await folder_of().fold(batch)


def hold_partitions(consumer: Any, folder: Folder) -> None:
    """Stop reading the partitions the fold holds and go back to the held record, so that a batch fetched past it
    cannot move on; the other partitions go on. A reader that can read the record takes over from the stored
    position (every assignment seeks there)."""
    if consumer is None or not folder.held:
        return
    assigned = consumer.assignment()
    for (topic, partition), hold in folder.held.items():
        tp = TopicPartition(topic, partition)
        if tp in assigned and tp not in consumer.paused():
            consumer.seek(tp, hold.offset)
            consumer.pause(tp)
