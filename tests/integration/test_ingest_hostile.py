"""Malformed and hostile payloads at the ingest endpoint: never a 500, never a valid item lost."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from events.jobs import JobCompleted, JobsCompleted
from events.registry import REGISTRY
from jobmeter.settings import Settings
from services.http.app import create_app
from tests.integration.helpers import INGEST, client_for, job, read_to_end

pytestmark = pytest.mark.integration


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
hostile_fields = st.fixed_dictionaries(
    {},
    optional={
        "account_id": json_values | st.sampled_from(["", " ", "a" * 500, "acme\n", "'; DROP TABLE x;--", "ü"]),
        "api": json_values | st.sampled_from(["extract", "EXTRACT", "nope"]),
        "job_id": json_values | st.text(max_size=300),
        "channel": json_values | st.sampled_from(["direct", "rapidapi", "Direct"]),
        "mode": json_values | st.sampled_from(["sync", "async", "batch"]),
        "completed_at": json_values | st.sampled_from(["2026-11-01T00:00:00", "yesterday", "2026-13-01T00:00:00Z"]),
        "extra": json_values,
    },
)
items = st.one_of(
    st.just("VALID"),  # replaced by a fresh valid job, so every valid item is unique and traceable
    hostile_fields,
    json_values,
)
bodies = st.one_of(
    st.lists(items, min_size=1, max_size=12).map(lambda xs: ("json", xs)),
    items.map(lambda x: ("json", x)),
    st.binary(max_size=200).map(lambda b: ("raw", b)),
    st.text(max_size=200).map(lambda t: ("raw", t.encode())),
)


def generated_bodies(count: int) -> list[tuple[str, Any]]:
    collected: list[tuple[str, Any]] = []

    @hsettings(max_examples=count, database=None, suppress_health_check=list(HealthCheck), deadline=None)
    @given(bodies)
    def collect(body: tuple[str, Any]) -> None:
        collected.append(body)

    collect()
    return collected


async def test_hostile_payloads_never_500_and_never_lose_a_valid_item(settings: Settings) -> None:
    sent_valid: set[str] = set()
    now = datetime.now(UTC)
    async with client_for(create_app(settings)) as client:
        for kind, body in generated_bodies(150):
            if kind == "json":
                body = _fill_valid(body, sent_valid, now)
                raw = json.dumps(body).encode()
            else:
                raw = body
            response = await client.post("/v1/jobs/completed", content=raw, headers=INGEST)
            assert response.status_code in (202, 400, 413, 422), (raw[:200], response.status_code, response.text)
            assert "detail" in response.json() or "accepted" in response.json()
            if kind == "json":
                expected = _valid_count(body)
                if expected:
                    assert response.status_code == 202, response.text
                    assert response.json()["accepted"] == expected, (body, response.json())
    records = await read_to_end(settings, "jobs")
    batches = [REGISTRY.decode(r.value or b"")[1] for r in records]
    assert all(isinstance(b, JobsCompleted) and r.key == b"acme" for r, b in zip(records, batches, strict=True))
    published = [job.job_id for batch in batches for job in batch.facts() if isinstance(job, JobCompleted)]
    assert sorted(published) == sorted(sent_valid)  # each valid item once


def _fill_valid(body: Any, sent: set[str], now: datetime) -> Any:
    def fill(item: Any) -> Any:
        if item == "VALID":
            job_id = f"v-{uuid.uuid4().hex}"
            sent.add(job_id)
            return job("acme", job_id, at=now)
        return item

    return [fill(x) for x in body] if isinstance(body, list) else fill(body)


def _valid_count(body: Any) -> int:
    listed = body if isinstance(body, list) else [body]
    return sum(1 for x in listed if isinstance(x, dict) and str(x.get("job_id", "")).startswith("v-")
               and set(x) == {"account_id", "api", "job_id", "channel", "mode", "completed_at"}
               and x.get("account_id") == "acme")
