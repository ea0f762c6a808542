"""Topics are created with the replication asked for, and a process says when ours hold fewer copies: at start
(the log) and in /healthz. On the local one-broker cluster: one copy by default, three refused with Kafka's
reason, and topics of one copy reported once three are asked for."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from events.topics import LOGICAL_TOPICS, Replication, TopicCreationError, Topics, ensure_topics
from jobmeter.settings import Settings
from services.http.app import create_app
from tests.integration.helpers import client_for

pytestmark = pytest.mark.integration


async def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, None)])
    finally:
        await admin.close()
    [resource] = response.resources
    return {entry[0]: entry[1] for entry in resource[4]}


async def test_topics_get_every_copy_the_cluster_can_give_and_the_in_sync_minimum(settings: Settings) -> None:
    topics = Topics(f"{settings.jobmeter_topic_prefix}rf.")
    report = await ensure_topics(settings.kafka_bootstrap_servers, topics, 2)
    assert report.replication == Replication(1, 1)  # three asked for by default, one broker here
    assert sorted(report.created) == sorted(topics.all()) and report.below_factor == {}
    config = await topic_config(settings.kafka_bootstrap_servers, topics.jobs)
    assert (config["min.insync.replicas"], config["retention.ms"]) == ("1", "-1")
    again = await ensure_topics(settings.kafka_bootstrap_servers, topics, 2)
    assert (again.created, again.below_factor, again.warnings()) == ([], {}, [])


async def test_a_factor_the_cluster_cannot_give_is_refused_with_kafkas_reason(settings: Settings) -> None:
    topics = Topics(f"{settings.jobmeter_topic_prefix}rf3.")
    with pytest.raises(TopicCreationError, match="replication factor of 3 cannot be reached"):
        await ensure_topics(settings.kafka_bootstrap_servers, topics, 2, replication_factor=3)


async def test_topics_below_the_configured_factor_are_reported_at_start_and_in_healthz(settings: Settings) -> None:
    async with client_for(create_app(settings)) as client:  # creates the sandbox's topics: one copy each
        healthy = (await client.get("/healthz")).json()
    assert healthy["warnings"] == []
    asking_three = settings.model_copy(update={"jobmeter_replication_factor": 3})
    async with client_for(create_app(asking_three)) as client:
        answer = await client.get("/healthz")
    assert answer.status_code == 200  # serving: the operator is told, traffic is not turned away
    warnings = answer.json()["warnings"]
    assert len(warnings) == len(LOGICAL_TOPICS)
    assert f"topic {settings.jobmeter_topic_prefix}jobs.completed has 1 copy of each partition, below the " \
           "replication factor 3" in " ".join(warnings)
