"""Outgoing webhooks, the pure parts: the retry schedule, the signature (and the recipe docs/webhooks.md gives
receivers), endpoint secrets, and which (event, endpoint) pairs become deliveries."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from events.keys import KeySuspended
from events.payg import BalanceLow, RechargeRequested
from events.webhooks import WebhookEndpointAdded
from jobmeter.settings import Settings
from projections.webhooks.types import WEBHOOK_TYPES, Endpoint, Happened, data_of, deliveries, known_types
from services.engine.attention import Bounds, webhook_deliveries
from services.webhooks.schedule import ATTEMPTS, RETRY_DELAYS, retry_delay
from services.webhooks.signing import endpoint_secret, signature, verify

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def test_the_first_retries_come_within_a_minute_then_back_off_over_three_days() -> None:
    delays = [retry_delay(n) for n in range(1, ATTEMPTS)]
    assert all(d is not None for d in delays)
    spans = [d for d in delays if d is not None]
    assert all(d <= timedelta(minutes=1) for d in spans[:3])
    assert spans == sorted(spans), "never sooner than the retry before"
    assert timedelta(days=2.5) <= sum(spans, timedelta()) <= timedelta(days=3)
    assert retry_delay(ATTEMPTS) is None, "every retry spent: given up"
    assert retry_delay(2, scale=0.001) == RETRY_DELAYS[1] * 0.001
    with pytest.raises(ValueError):
        retry_delay(0)


def test_the_signature_is_the_hmac_of_timestamp_dot_body() -> None:
    body = b'{"id":"x"}'
    header = signature("whsec_abc", body, 1_764_806_400)
    expected = hmac.new(b"whsec_abc", b"1764806400." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1764806400,v1={expected}"


def test_verify_accepts_a_fresh_signature_and_refuses_a_changed_body_another_secret_or_an_old_one() -> None:
    body, now = b'{"id":"x","type":"keys.suspended"}', int(time.time())
    header = signature("whsec_abc", body, now)
    assert verify("whsec_abc", header, body, now)
    assert not verify("whsec_abc", header, body + b" ", now)
    assert not verify("whsec_abd", header, body, now)
    assert not verify("whsec_abc", header, body, now + 301)
    assert not verify("whsec_abc", "v1=" + header.split("v1=")[1], body, now)


def documented() -> Any:
    section = DOCS.read_text().split("## Verifying a signature", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    scope: dict[str, Any] = {}
    exec(code.group(1), scope)  # noqa: S102 - our own documentation
    return scope["verify"]


def test_the_documented_recipe_agrees_with_the_sender() -> None:
    recipe, body = documented(), b'{"id":"y"}'
    header = signature("whsec_k", body, int(time.time()))
    assert recipe("whsec_k", header, body)
    assert not recipe("whsec_k", header, b'{"id":"z"}')
    assert not recipe("whsec_k", signature("whsec_k", body, int(time.time()) - 3600), body)


def test_an_endpoint_secret_is_derived_from_the_server_key_and_the_endpoint_only() -> None:
    one = endpoint_secret("server-key-0123456789", "we_" + "a" * 24)
    assert one == endpoint_secret("server-key-0123456789", "we_" + "a" * 24)
    assert one.startswith("whsec_") and len(one) == len("whsec_") + 64
    assert one != endpoint_secret("server-key-0123456789", "we_" + "b" * 24)
    assert one != endpoint_secret("another-server-key-01", "we_" + "a" * 24)
    with pytest.raises(ValueError):
        endpoint_secret("", "we_" + "a" * 24)


def test_every_mapped_field_is_a_field_of_its_event() -> None:
    for event, kind in WEBHOOK_TYPES.items():
        assert set(kind.fields) <= set(event.model_fields), (event.__name__, kind.fields)
    assert {"usage.threshold_crossed", "usage.cap_reached", "balance.low", "balance.recharged", "recharge.failed",
            "recharge.requested", "keys.suspended", "keys.restored"} <= set(known_types())
    # Every PAYG balance's crossing is balance.low; the recharge some of them request is its own type.
    assert WEBHOOK_TYPES[BalanceLow].name == "balance.low"
    assert WEBHOOK_TYPES[RechargeRequested].name == "recharge.requested"


def happened(account: str, at: datetime, kind: str = "keys.suspended") -> Happened:
    return Happened(uuid.uuid4(), account, kind, at, {"reason": "r"})


def endpoint(name: str, account: str = "acme", types: tuple[str, ...] = (),
             removed: datetime | None = None) -> Endpoint:
    return Endpoint(f"we_{name:0>24}", account, types, T0, removed)


def test_deliveries_go_to_the_account_s_endpoints_that_existed_and_want_the_type() -> None:
    later = T0 + timedelta(minutes=1)
    events = [happened("acme", later), happened("acme", T0 - timedelta(seconds=1)), happened("other", later),
              happened("acme", later, "balance.low")]
    hooks = [endpoint("1"), endpoint("2", types=("balance.low",)), endpoint("3", removed=T0 + timedelta(seconds=30))]
    made = deliveries(events, hooks)
    pairs = {(d.event_id, d.endpoint_id) for d in made}
    assert pairs == {(events[0].event_id, hooks[0].endpoint_id), (events[3].event_id, hooks[0].endpoint_id),
                     (events[3].event_id, hooks[1].endpoint_id)}
    assert all(not d.cancelled for d in made)


def test_a_delivery_has_one_id_and_one_body_however_often_it_is_made() -> None:
    event = happened("acme", T0 + timedelta(seconds=5))
    first, again = deliveries([event], [endpoint("1")]), deliveries([event], [endpoint("1")])
    assert first == again
    body = json.loads(first[0].body)
    assert body == {"id": str(first[0].delivery_id), "type": "keys.suspended",
                    "created": int(event.occurred_at.timestamp()), "account_id": "acme", "data": {"reason": "r"}}
    other = deliveries([event], [endpoint("2")])[0]
    assert other.delivery_id != first[0].delivery_id


def test_data_is_the_named_fields_as_they_travel() -> None:
    event = KeySuspended(account_id="acme", source="cap", reason="cap_reached", cause="cap:1", effective_at=T0,
                         sequence=1, until=T0 + timedelta(days=3))
    assert data_of(event, WEBHOOK_TYPES[KeySuspended]) == {
        "source": "cap", "reason": "cap_reached", "effective_at": "2026-12-01T12:00:00Z",
        "until": "2026-12-04T12:00:00Z",
    }


def test_an_endpoint_url_must_be_http_with_a_host() -> None:
    for bad in ("ftp://example.com/x", "https:///path", "example.com"):
        with pytest.raises(ValueError):
            WebhookEndpointAdded(account_id="acme", endpoint_id="we_" + "0" * 24, url=bad, added_at=T0)


def delivery_row(state: str, created_at: datetime, **over: Any) -> dict[str, Any]:
    return {"delivery_id": uuid.UUID(int=1), "account_id": "acme", "url": "https://example.com/h",
            "type": "keys.suspended", "state": state, "attempts": 4, "last_status": 500, "last_error": "HTTP 500",
            "created_at": created_at, "next_attempt_at": created_at + timedelta(hours=2), **over}


def test_the_doctor_lists_deliveries_given_up_and_those_failing_past_the_bound() -> None:
    bound = Bounds.of(Settings()).webhook
    assert bound == timedelta(hours=1)
    now = T0 + timedelta(days=1)
    rows = [delivery_row("pending", now - bound), delivery_row("pending", now - bound + timedelta(seconds=1)),
            delivery_row("failed", now - timedelta(minutes=1), last_status=None, last_error="timed out")]
    items = webhook_deliveries(rows, now, bound)
    assert [i.kind for i in items] == ["webhook-delivery-failing", "webhook-delivery-failed"]
    assert all(i.subject == "acme" and i.resolve == "jobmeter webhooks deliveries acme" for i in items)
    assert "last HTTP 500" in items[0].detail and "last timed out" in items[1].detail
    assert Bounds.of(Settings(jobmeter_webhook_retry_scale=0.01)).webhook == timedelta(seconds=36)
