"""The chaos run's faults for a Kafka cluster (`jobmeter chaos --brokers 3`): SIGKILL of the node leading the job
topic's first partition, restarted once its peers have taken over; then the same for whichever node leads it next."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient

from events.topics import Topics
from jobmeter.settings import Settings
from services.devtools import stack

Log = Callable[[str], None]


async def leader_of_jobs(settings: Settings) -> int:
    """The node id leading partition 0 of the job topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        [described] = await admin.describe_topics([Topics(settings.jobmeter_topic_prefix).jobs])
    finally:
        await admin.close()
    return next(int(p["leader"]) for p in described["partitions"] if p["partition"] == 0)


@dataclass
class BrokerFaults:
    """Kills of the node that leads the job partitions; each is restarted before the next fault starts."""

    settings: Settings
    rng: random.Random
    log: Log
    killed: list[str] = field(default_factory=list)  # node names, in kill order

    def actions(self, kills: int = 2) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        return [(f"SIGKILL kafka leader #{n + 1}", self.kill_leader) for n in range(kills)]

    async def kill_leader(self) -> None:
        name = f"kafka-{await leader_of_jobs(self.settings)}"
        self.log(f"{name} leads the job partitions: SIGKILL")
        await asyncio.to_thread(stack.kill, name)
        self.killed.append(name)
        await asyncio.sleep(self.rng.uniform(2.0, 5.0))  # a workload spell on the two nodes left
        await asyncio.to_thread(stack.restart, name)
