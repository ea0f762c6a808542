"""Webhook endpoint commands and reads. Endpoints are facts on the bus (accounts topic), folded by the `webhooks`
consumer; an endpoint's secret is derived from the server's signing key (`signing`) and shown once, when added."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from events.webhooks import WebhookEndpointAdded, WebhookEndpointRemoved
from projections.accounts import queries as accounts
from projections.webhooks import queries
from projections.webhooks.types import known_types
from services.platform.resources import Resources
from services.platform.rows import plain
from services.webhooks.signing import endpoint_secret


class WebhookCommandError(LookupError):
    """A webhook command that cannot be done as asked (unknown account, endpoint or type, a bad URL)."""


@dataclass(frozen=True)
class NewEndpoint:
    endpoint_id: str
    secret: str  # shown once; derivable only with the server's signing key
    account_id: str
    url: str
    event_types: tuple[str, ...]
    folded: bool  # False when the consumer had not applied it within the wait (it will)


async def add_endpoint(res: Resources, account_id: str, url: str, event_types: list[str] | None = None,
                       *, wait_seconds: float = 5.0) -> NewEndpoint:
    unknown = sorted(set(event_types or ()) - set(known_types()))
    if unknown:
        raise WebhookCommandError(f"unknown type(s) {', '.join(unknown)}; known: {', '.join(known_types())}")
    async with res.pool_for("accounts").acquire() as conn:
        if await accounts.account(conn, account_id) is None:
            raise WebhookCommandError(f"no account {account_id!r}")
    try:
        event = WebhookEndpointAdded(account_id=account_id, endpoint_id=f"we_{secrets.token_hex(12)}", url=url,
                                     event_types=tuple(sorted(set(event_types or ()))), added_at=datetime.now(UTC))
    except ValidationError as error:
        raise WebhookCommandError("; ".join(e["msg"] for e in error.errors())) from None
    secret = endpoint_secret(res.settings.jobmeter_webhook_signing_key.get_secret_value(), event.endpoint_id)
    await res.publisher.publish(event)
    folded = await _wait_for(res, event.endpoint_id, removed=False, wait_seconds=wait_seconds)
    return NewEndpoint(event.endpoint_id, secret, account_id, url, event.event_types, folded)


async def remove_endpoint(res: Resources, endpoint_id: str, *, wait_seconds: float = 5.0) -> dict[str, Any]:
    async with res.pool_for("webhooks").acquire() as conn:
        found = await queries.endpoint(conn, endpoint_id)
    if found is None:
        raise WebhookCommandError(f"no endpoint {endpoint_id!r}")
    if found["removed_at"] is not None:
        raise WebhookCommandError(f"endpoint {endpoint_id} is already removed")
    await res.publisher.publish(WebhookEndpointRemoved(account_id=found["account_id"], endpoint_id=endpoint_id,
                                                       removed_at=datetime.now(UTC)))
    await _wait_for(res, endpoint_id, removed=True, wait_seconds=wait_seconds)
    async with res.pool_for("webhooks").acquire() as conn:
        return _endpoint_row(await queries.endpoint(conn, endpoint_id) or found)


async def list_endpoints(res: Resources, account_id: str) -> list[dict[str, Any]]:
    async with res.pool_for("webhooks").acquire() as conn:
        return [_endpoint_row(r) for r in await queries.endpoints(conn, account_id)]


async def list_deliveries(res: Resources, account_id: str, limit: int = 100) -> list[dict[str, Any]]:
    async with res.pool_for("webhooks").acquire() as conn:
        rows = await queries.deliveries(conn, account_id, limit)
    return [plain({**r, "delivery_id": str(r["delivery_id"])}) for r in rows]


async def list_alert_mails(res: Resources, account_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """The account's alert emails (the other channel of the alerts), newest first."""
    async with res.pool_for("webhooks").acquire() as conn:
        rows = await queries.alert_mails(conn, account_id, limit)
    return [plain({**r, "event_id": str(r["event_id"])}) for r in rows]


def _endpoint_row(row: Any) -> dict[str, Any]:
    return plain({"endpoint_id": row["endpoint_id"], "account_id": row["account_id"], "url": row["url"],
                  "event_types": ",".join(row["event_types"]) or "(all)", "added_at": row["added_at"],
                  "removed_at": row["removed_at"]})


async def _wait_for(res: Resources, endpoint_id: str, *, removed: bool, wait_seconds: float) -> bool:
    deadline = time.monotonic() + wait_seconds
    while True:
        async with res.pool_for("webhooks").acquire() as conn:
            row = await queries.endpoint(conn, endpoint_id)
        if row is not None and (row["removed_at"] is not None) == removed:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
