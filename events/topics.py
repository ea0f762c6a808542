"""Topic names in one place, and their creation at start.

Every consumer and producer asks `Topics` for a name; a prefix (JOBMETER_TOPIC_PREFIX) lets tests and
side-by-side deployments share one cluster without seeing each other's events.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

# Logical name -> topic suffix. The event log topics are kept forever: replay starts from offset zero.
LOGICAL_TOPICS: dict[str, str] = {
    "jobs": "jobs.completed",
    "legacy": "legacy.operations",
    "accounts": "accounts.events",
    "stripe": "stripe.events",
    "keys": "keys.events",
    "billing": "billing.events",
    "payg": "payg.events",
    "rapidapi": "rapidapi.events",
    "deadletters": "deadletters",
}

KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}


@dataclass(frozen=True)
class Topics:
    prefix: str = ""

    def name(self, logical: str) -> str:
        try:
            return f"{self.prefix}{LOGICAL_TOPICS[logical]}"
        except KeyError:
            raise ValueError(f"unknown topic {logical!r}; known: {', '.join(LOGICAL_TOPICS)}") from None

    @property
    def jobs(self) -> str:
        return self.name("jobs")

    @property
    def deadletters(self) -> str:
        return self.name("deadletters")

    def all(self) -> list[str]:
        return [self.name(logical) for logical in LOGICAL_TOPICS]


async def ensure_topics(bootstrap_servers: str, topics: Topics, partitions: int) -> list[str]:
    """Create every missing topic; returns the names it created. Safe to call from every process."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics.all() if name not in existing]
        if not missing:
            return []
        new = [NewTopic(name, partitions, 1, topic_configs=dict(KEEP_FOREVER)) for name in missing]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass  # another process won the race; the topic is what we wanted either way
        return missing
    finally:
        await admin.close()
