"""Outgoing webhook facts: the endpoints an account has us deliver its events to.

An endpoint's signing secret never travels: it is derived where deliveries are signed, from a server key and the
endpoint id (`services.webhooks.signing`), so the log and every table hold only the id. The endpoint events travel
on the accounts topic, beside the other facts about who an account is and how it is served.
"""

from __future__ import annotations

import uuid
from typing import Annotated, ClassVar
from urllib.parse import urlsplit

from pydantic import AwareDatetime, Field, StringConstraints, field_validator

from events.envelope import Event, natural_event_id
from events.types import AccountId

EndpointId = Annotated[str, StringConstraints(pattern=r"^we_[0-9a-f]{24}$")]
# A webhook type as customers see it: `keys.suspended`, `usage.cap_reached`.
WebhookType = Annotated[str, StringConstraints(pattern=r"^[a-z]+(\.[a-z_]+)+$", max_length=64)]


class WebhookEndpointAdded(Event):
    """The account wants `event_types` (none listed: every type) POSTed to `url`, signed with the endpoint's secret."""

    event_type: ClassVar[str] = "WebhookEndpointAdded"
    topic: ClassVar[str] = "accounts"

    account_id: AccountId
    endpoint_id: EndpointId
    url: str = Field(max_length=2048, description="http(s) URL the deliveries are POSTed to")
    event_types: tuple[WebhookType, ...] = Field(default=(), description="the types it receives; empty: all")
    added_at: AwareDatetime = Field(description="it receives what happens from this instant on")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s):// URL with a host")
        return value

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("webhook-endpoint-added", self.endpoint_id)


class WebhookEndpointRemoved(Event):
    """No more deliveries to this endpoint, and those still being retried are cancelled. Final."""

    event_type: ClassVar[str] = "WebhookEndpointRemoved"
    topic: ClassVar[str] = "accounts"

    account_id: AccountId
    endpoint_id: EndpointId
    removed_at: AwareDatetime

    def natural_id(self) -> uuid.UUID:
        return natural_event_id("webhook-endpoint-removed", self.endpoint_id)
