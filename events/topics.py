"""Topic names in one place, and their creation at start.

Every consumer and producer asks `Topics` for a name; a prefix (JOBMETER_TOPIC_PREFIX) lets tests and
side-by-side deployments share one cluster without seeing each other's events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

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


@dataclass(frozen=True)
class Replication:
    factor: int
    min_insync: int


def replication_for(brokers: int, factor: int | None = None, min_insync: int | None = None) -> Replication:
    """What jobmeter creates topics with: the factor asked for, else three copies (or one per broker when the
    cluster has fewer); the minimum in-sync replicas asked for, else 2 from three copies up, so `acks=all` means
    two copies and one broker may be down without refusing writes."""
    chosen = factor if factor is not None else max(1, min(3, brokers))
    isr = min_insync if min_insync is not None else (2 if chosen >= 3 else 1)
    if isr > chosen:
        raise ValueError(f"min.insync.replicas {isr} is above the replication factor {chosen}: no write could succeed")
    return Replication(chosen, isr)


@dataclass(frozen=True)
class TopicsReport:
    """What `ensure_topics` did and found: the topics it created, and ours that hold fewer copies than asked."""

    replication: Replication
    created: list[str] = field(default_factory=list)
    below_factor: dict[str, int] = field(default_factory=dict)  # topic -> the copies its partitions have

    def warnings(self) -> list[str]:
        return [
            f"topic {name} has {copies} cop{'y' if copies == 1 else 'ies'} of each partition, below the "
            f"replication factor {self.replication.factor}: a broker's disk is all that holds it"
            for name, copies in sorted(self.below_factor.items())
        ]


class TopicCreationError(RuntimeError):
    """Kafka refused to create a topic (a replication factor above the brokers it has, say)."""


TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(
    bootstrap_servers: str, topics: Topics, partitions: int, *, replication_factor: int | None = None,
    min_insync: int | None = None,
) -> TopicsReport:
    """Create every missing topic with the replication asked for, and report those of ours that have fewer copies.
    Safe to call from every process."""
    return await _survey(bootstrap_servers, topics, replication_factor, min_insync, create_partitions=partitions)


async def check_topics(
    bootstrap_servers: str, topics: Topics, *, replication_factor: int | None = None, min_insync: int | None = None,
) -> TopicsReport:
    """What `ensure_topics` would find, creating nothing: `created` names the topics that are missing."""
    return await _survey(bootstrap_servers, topics, replication_factor, min_insync, create_partitions=None)


async def _survey(
    bootstrap_servers: str, topics: Topics, replication_factor: int | None, min_insync: int | None, *,
    create_partitions: int | None,
) -> TopicsReport:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        plan = replication_for(brokers, replication_factor, min_insync)
        existing = set(await admin.list_topics())
        ours = [name for name in topics.all() if name in existing]
        missing = [name for name in topics.all() if name not in existing]
        if missing and create_partitions is not None:
            await _create(admin, missing, create_partitions, plan)
        return TopicsReport(plan, missing, await _below_factor(admin, ours, plan.factor))
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, names: list[str], partitions: int, plan: Replication) -> None:
    configs = {**KEEP_FOREVER, "min.insync.replicas": str(plan.min_insync)}
    response = await admin.create_topics([NewTopic(name, partitions, plan.factor, topic_configs=configs)
                                          for name in names])
    refused = [f"{topic}: {message}" for topic, code, message in response.topic_errors
               if code not in (0, TOPIC_ALREADY_EXISTS)]  # already there: another process won the race
    if refused:
        raise TopicCreationError(f"Kafka refused to create {'; '.join(refused)}")


async def _below_factor(admin: AIOKafkaAdminClient, names: list[str], factor: int) -> dict[str, int]:
    """topic -> the fewest copies any of its partitions has, for those of `names` below `factor`."""
    below: dict[str, int] = {}
    for described in await admin.describe_topics(names) if names else []:
        copies = [len(p["replicas"]) for p in described["partitions"]]
        if copies and min(copies) < factor:
            below[described["topic"]] = min(copies)
    return below
