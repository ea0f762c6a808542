"""Where a rebuild sends the records it cannot fold: the dead-letter topic, as the live consumer does."""

from __future__ import annotations

from collections.abc import Sequence

from events.deadletters import DeadLettered
from events.publisher import Publisher
from events.topics import Topics
from jobmeter.settings import Settings


class DeadLetterPublisher:
    """The rebuild's dead-letter sink. Its letters share their event ids with the live consumer's (same
    consumer, topic, partition and offset), so a record the live consumer already refused is not a new fact."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sent = 0
        self._publisher: Publisher | None = None

    async def __call__(self, letters: Sequence[DeadLettered]) -> None:
        if self._publisher is None:  # most replays have none: connect only when one is needed
            s = self.settings
            topics = Topics(s.jobmeter_topic_prefix)
            self._publisher = Publisher(s.kafka_bootstrap_servers, producer="jobmeter-replay", topics=topics)
            await self._publisher.start()
        await self._publisher.publish_many(list(letters))
        self.sent += len(letters)

    async def close(self) -> None:
        if self._publisher is not None:
            await self._publisher.stop()
