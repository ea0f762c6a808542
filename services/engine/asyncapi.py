"""The AsyncAPI description of every topic and consumer, generated from the FastStream subscribers themselves.

`jobmeter docs asyncapi` writes it to docs/asyncapi.json; `faststream docs serve services.engine.asyncapi:app`
serves it. Building the brokers needs no running server.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Union

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from events.codec import wire_shape
from events.envelope import Event
from events.registry import REGISTRY
from events.topics import Topics
from jobmeter.settings import Settings
from services.engine.runtime import PROJECTION_SERVICES, build_runtime

# The defaults, whatever this process's environment says, so the document is the same wherever it is built; only
# the topology is read from them (development mode: no secret is needed to describe topics).
DOCS_SETTINGS = Settings.model_construct(kafka_bootstrap_servers="kafka:9092", jobmeter_env="development")


def document_topics(broker: KafkaBroker) -> None:
    """Declare each topic's events as publishers, so the specification shows their payloads."""
    by_topic: dict[str, list[type[Event]]] = defaultdict(list)
    for model in REGISTRY.models():
        by_topic[model.topic].append(model)
    topics = Topics(DOCS_SETTINGS.jobmeter_topic_prefix)
    for logical, models in sorted(by_topic.items()):
        envelopes = [wire_shape(m) for m in models]
        schema: Any = envelopes[0] if len(envelopes) == 1 else Union[tuple(envelopes)]  # noqa: UP007
        broker.publisher(topics.name(logical), title=f"{logical}:events", schema=schema,
                         description=", ".join(m.event_type for m in models))


def build_broker() -> KafkaBroker:
    broker = build_runtime(DOCS_SETTINGS, list(PROJECTION_SERVICES)).broker
    document_topics(broker)
    return broker


def as_json() -> dict[str, Any]:
    spec = AsyncAPI(build_broker(), title="jobmeter", version="0.1.0", description=__doc__)
    result: dict[str, Any] = json.loads(spec.to_specification().to_json())
    return result


_broker = build_broker()
app = FastStream(_broker, specification=AsyncAPI(_broker, title="jobmeter", version="0.1.0"))
