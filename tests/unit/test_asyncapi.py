"""docs/asyncapi.json is generated from the subscribers and event models; it must be the current one."""

from __future__ import annotations

import json
from pathlib import Path

from services.engine.asyncapi import as_json

DOCS = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_the_committed_asyncapi_is_the_generated_one() -> None:
    assert json.loads(DOCS.read_text()) == as_json(), "run `jobmeter docs asyncapi` and commit docs/asyncapi.json"


def test_every_event_type_is_documented() -> None:
    schemas = as_json()["components"]["schemas"]
    for name in ("JobCompletedEnvelope", "DeadLetteredEnvelope", "KeySuspendedEnvelope", "StripeEventReceivedEnvelope"):
        assert name in schemas
