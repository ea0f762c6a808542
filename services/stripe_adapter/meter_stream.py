"""Meter events through Stripe's v2 meter event stream: up to 100 events a request, for high volume.

The stream is authenticated by a short-lived session token (15 minutes) created with the secret key; the token
is renewed a minute before it expires, or at once when Stripe says it has (`TemporarySessionExpiredError`).
Each event keeps the identifier derived from its data, so a retried batch — ours, or one after a crash — is
dropped by Stripe event by event. Requests wait for the same token bucket as v1 calls.

stripe-mock has no /v2 endpoints: the tests run this against a local fake of these two endpoints alone.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from events.envelope import utcnow
from services.platform.rate_limit import TokenBucket
from services.stripe_adapter.client import MeterEvent, is_retryable, meter_request_key

log = structlog.get_logger(__name__)

MAX_EVENTS_PER_REQUEST = 100
RENEW_BEFORE = timedelta(minutes=1)


@dataclass(frozen=True)
class Session:
    token: str
    expires_at: datetime


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def stream_event(event: MeterEvent) -> dict[str, Any]:
    return {
        "event_name": event.event_name,
        "identifier": event.identifier,
        "timestamp": event.timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "payload": {"stripe_customer_id": event.customer_id, "value": str(event.value)},
    }


def batch_key(events: Sequence[MeterEvent], request: int) -> str:
    """A fresh idempotency key for every request of a batch (a 500 is replayed to any retry under its key, see
    `meter_request_key`); the identifiers inside keep a resent event counted once."""
    parts = [meter_request_key(e.identifier, e.attempt, request) for e in events]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"jobmeter-stream-{digest[:48]}"


def _retry_stream(error: BaseException) -> bool:
    return is_retryable(error) or isinstance(error, stripe.TemporarySessionExpiredError)


class StripeMeterEventStream:
    """A MeterEventSink that sends up to `batch_size` events a request; the sender fills its batches."""

    batch_size = MAX_EVENTS_PER_REQUEST

    def __init__(self, client: stripe.StripeClient, bucket: TokenBucket, *, attempts: int = 6,
                 max_backoff: float = 10.0, clock: Callable[[], datetime] = utcnow) -> None:
        self.client = client
        self.bucket = bucket
        self.attempts = attempts
        self.max_backoff = max_backoff
        self.clock = clock
        self._session: Session | None = None
        self._opening = asyncio.Lock()  # batches sent at once share one new session

    async def _token(self) -> str:
        async with self._opening:
            if self._session is None or self._session.expires_at - RENEW_BEFORE <= self.clock():
                await self.bucket.acquire()
                created = await self.client.v2.billing.meter_event_session.create_async()
                self._session = Session(created.authentication_token, _parse_time(str(created.expires_at)))
                log.info("meter event stream session opened", expires_at=self._session.expires_at.isoformat())
            return self._session.token

    async def send(self, event: MeterEvent) -> None:
        await self.send_batch([event])

    async def send_batch(self, events: Sequence[MeterEvent]) -> None:
        if not events:
            return
        if len(events) > self.batch_size:
            raise ValueError(f"at most {self.batch_size} events a request")
        params: Any = {"events": [stream_event(e) for e in events]}
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_retry_stream),
            wait=wait_exponential_jitter(multiplier=0.2, max=self.max_backoff),
            stop=stop_after_attempt(self.attempts),
            reraise=True,
        ):
            with attempt:
                token = await self._token()
                await self.bucket.acquire()
                try:
                    await self.client.v2.billing.meter_event_stream.create_async(
                        params, {"api_key": token,
                                 "idempotency_key": batch_key(events, attempt.retry_state.attempt_number)}
                    )
                except stripe.TemporarySessionExpiredError:
                    if self._session is not None and self._session.token == token:
                        self._session = None  # renewed on the retry (once, however many batches saw it expire)
                    raise
