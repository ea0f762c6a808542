"""A mounted fold must not leave its batch reachable from the timers it schedules (issue 18).

asyncpg schedules a timer for every statement it caches (expiry after 300 s) and for every command timeout, and a
timer keeps a copy of the context it was scheduled in. FastStream's context holds the batch's message, every
record of it, while the handler runs: folded there, each such timer kept a whole batch alive for minutes.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, cast

from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.message import StreamMessage

from projections.fold import Folder
from projections.holds import Holds
from projections.records import RawRecord
from services.platform.consumers import mount_projection


class TimerScheduling:
    """Stands in for a Folder: schedules a timer the way asyncpg's statement cache does, and keeps the context
    that timer keeps."""

    def __init__(self) -> None:
        self.held = Holds("probe")
        self.batches: list[list[RawRecord]] = []
        self.timer_contexts: list[contextvars.Context] = []
        self.timers: list[asyncio.TimerHandle] = []

    async def fold(self, records: list[RawRecord]) -> None:
        self.batches.append(records)
        self.timers.append(asyncio.get_running_loop().call_later(300, lambda: None))
        self.timer_contexts.append(contextvars.copy_context())  # what call_later keeps with the handle


def messages_in(context: contextvars.Context) -> list[StreamMessage[Any]]:
    return [value for value in context.values() if isinstance(value, StreamMessage)]


async def test_timers_scheduled_by_a_fold_keep_no_message_of_the_batch() -> None:
    folder = TimerScheduling()
    broker = KafkaBroker()
    mount_projection(broker, lambda: cast(Folder, folder), topics=["probe.jobs"], group="probe", max_records=100,
                     timeout_ms=10, title="probe")
    try:
        async with TestKafkaBroker(broker) as test_broker:
            await test_broker.publish_batch(b"one", b"two", b"three", topic="probe.jobs")
    finally:
        for timer in folder.timers:
            timer.cancel()
    assert [[r.value for r in batch] for batch in folder.batches] == [[b"one", b"two", b"three"]]
    assert len(folder.timer_contexts) == 1
    assert messages_in(folder.timer_contexts[0]) == []
