"""The Stripe adapter: one client factory, and the small typed calls the engine makes.

The SDK's own retries are off (`max_network_retries=0`): ours (tenacity) retry 429, 409, 5xx, timeouts and
connection errors with exponential backoff and jitter, always with the caller's idempotency key, so a retry —
ours, or one after a crash — is recognised by Stripe as the same request. Every call waits for a token of the
process's request budget first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import stripe
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from jobmeter.settings import Settings
from services.platform.rate_limit import TokenBucket

log = structlog.get_logger(__name__)

# Statuses worth retrying with the same idempotency key: rate limited, a concurrent request with the same key
# still in flight (409), and the server's own failures.
RETRYABLE_STATUSES = frozenset({409, 429, 500, 502, 503, 504})

# The SDK logs every request at INFO; ours log what matters (retries, failures) with the report's identity.
logging.getLogger("stripe").setLevel(logging.WARNING)


def make_client(
    settings: Settings, *, api_base: str | None = None, meter_events_base: str | None = None
) -> stripe.StripeClient:
    """The one way to build a Stripe client: the configured key and base address, no SDK retries."""
    http_client = stripe.HTTPXClient(timeout=settings.jobmeter_stripe_timeout_seconds, allow_sync_methods=True)
    return stripe.StripeClient(
        settings.stripe_secret_key.get_secret_value(),
        base_addresses={"api": api_base or settings.stripe_api_base,
                        "meter_events": meter_events_base or settings.stripe_meter_events_base},
        max_network_retries=0,
        http_client=http_client,
    )


def is_retryable(error: BaseException) -> bool:
    """Could the same request succeed later? (Then it is retried with the same idempotency key.)"""
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError | TimeoutError):
        return True  # timeouts and refused connections arrive as APIConnectionError
    if isinstance(error, stripe.StripeError):
        return error.http_status in RETRYABLE_STATUSES
    return False


@dataclass(frozen=True)
class MeterEvent:
    """One customer's usage for one window, as Stripe's meter event carries it."""

    event_name: str
    customer_id: str
    value: int
    timestamp: datetime
    identifier: str
    attempt: int = 1  # the sender's claim of the report: a fresh idempotency key for each


def meter_request_key(identifier: str, attempt: int, request: int) -> str:
    """The idempotency key of one request carrying a meter event: new for every claim and every request.

    Stripe saves a 500 under its idempotency key and replays it to every retry with that key for 24 hours, so a
    retry under the same key could never succeed. Stripe deduplicates meter events by `identifier` on its own,
    so a fresh key with the same identifier still records the usage once. The key starts with the identifier,
    so Stripe's error reports, which name the request's key, lead back to the report (`identifier_of_key`).
    """
    return f"{identifier}:{attempt}.{request}"


def identifier_of_key(key: str) -> str:
    """The meter event identifier a `meter_request_key` was made for (an identifier holds no colon)."""
    return key.split(":", 1)[0]


class MeterEventSink(Protocol):
    """Where the meter sender delivers events: one at a time, or up to `batch_size` in one request."""

    @property
    def batch_size(self) -> int:
        """The most events `send_batch` takes at once; 1 for a sink that sends one event a request."""

    async def send(self, event: MeterEvent) -> None:
        """Deliver the event, or raise: a retryable error (is_retryable) or a permanent one."""

    async def send_batch(self, events: Sequence[MeterEvent]) -> None:
        """Deliver the events (at most `batch_size`) together, or raise as `send` does."""


class StripeMeterEvents:
    """Meter events to Stripe's v1 API: budgeted, retried, counted once by the event's own identifier."""

    batch_size = 1  # the v1 API takes one event a request

    def __init__(self, client: stripe.StripeClient, bucket: TokenBucket, *, attempts: int = 6,
                 max_backoff: float = 10.0) -> None:
        self.client = client
        self.bucket = bucket
        self.attempts = attempts
        self.max_backoff = max_backoff

    async def send(self, event: MeterEvent) -> None:
        params: dict[str, Any] = {
            "event_name": event.event_name,
            "identifier": event.identifier,
            "timestamp": int(event.timestamp.timestamp()),
            "payload": {"stripe_customer_id": event.customer_id, "value": str(event.value)},
        }
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            wait=wait_exponential_jitter(multiplier=0.2, max=self.max_backoff),
            stop=stop_after_attempt(self.attempts),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    log.info("retrying meter event", identifier=event.identifier,
                             attempt=attempt.retry_state.attempt_number)
                await self.bucket.acquire()
                key = meter_request_key(event.identifier, event.attempt, attempt.retry_state.attempt_number)
                await self.client.v1.billing.meter_events.create_async(
                    params,  # type: ignore[arg-type]
                    {"idempotency_key": key},
                )


    async def send_batch(self, events: Sequence[MeterEvent]) -> None:
        for event in events:
            await self.send(event)


def meter_events_for(settings: Settings, *, api_base: str | None = None, attempts: int = 6) -> StripeMeterEvents:
    bucket = TokenBucket(settings.jobmeter_stripe_requests_per_second)
    return StripeMeterEvents(make_client(settings, api_base=api_base), bucket, attempts=attempts)


def event_summaries(client: stripe.StripeClient, meter_id: str, customer_id: str, start: datetime,
                    end: datetime) -> int:
    """What Stripe has aggregated for one customer on one meter in [start, end) (minute-aligned times)."""
    total = 0
    page = client.v1.billing.meters.event_summaries.list(
        meter_id, {"customer": customer_id, "start_time": int(start.timestamp()), "end_time": int(end.timestamp())}
    )
    for summary in page.auto_paging_iter():
        total += int(summary.aggregated_value)
    return total
