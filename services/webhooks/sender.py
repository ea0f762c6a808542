"""The webhook sender: POSTs what the fold recorded in `deliveries`, signed, and records each attempt.

Runs beside the `webhooks` consumer. A pass leases the due deliveries in one transaction, POSTs them side by side
without holding it, and records each outcome in another: a 2xx is delivered; anything else (another status, a
timeout, no connection) is retried on `schedule.retry_delay`, under the same `id` and the same body. A sender killed
between the two transactions leaves its deliveries leased; once the lease ends they are due again and sent again
under the same id, so a receiver that keeps the ids it has processed drops the copy.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import structlog

from jobmeter.settings import Settings
from projections.db import transaction
from projections.webhooks import store
from services.platform.poll import PollPolicy, poll
from services.platform.resources import Resources
from services.webhooks.schedule import retry_delay
from services.webhooks.signing import HEADER, endpoint_secret, signature

log = structlog.get_logger(__name__)

BATCH = 32  # deliveries a pass sends side by side


@dataclass(frozen=True)
class Outcome:
    delivery_id: uuid.UUID
    status: int | None  # None: no answer (timeout, refused connection)
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def lease(settings: Settings) -> timedelta:
    """Long enough for every POST of a pass to end (each is bounded by the timeout) and its outcome to be written."""
    return timedelta(seconds=2 * settings.jobmeter_webhook_timeout_seconds + 5)


async def attempt(client: httpx.AsyncClient, row: asyncpg.Record, signing_key: str, timeout: float) -> Outcome:
    """One POST, bounded by `timeout` in all (httpx's own timeouts bound each read, not an answer that trickles)."""
    body = row["body"].encode()
    secret = endpoint_secret(signing_key, row["endpoint_id"])
    headers = {"Content-Type": "application/json", "User-Agent": "jobmeter-webhooks/1",
               HEADER: signature(secret, body, int(time.time()))}
    try:
        # Streamed and closed unread: only the status matters, and an endpoint cannot make us hold a large answer.
        async with asyncio.timeout(timeout), client.stream("POST", row["url"], content=body,
                                                           headers=headers) as response:
            status = response.status_code
    except (httpx.TimeoutException, TimeoutError):
        return Outcome(row["delivery_id"], None, "timed out")
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as error:
        return Outcome(row["delivery_id"], None, f"{type(error).__name__}: {error}"[:500])
    except Exception as error:  # counted as a failed attempt, never a pass that loses every outcome of its batch
        log.exception("webhook delivery attempt failed unexpectedly", delivery_id=str(row["delivery_id"]))
        return Outcome(row["delivery_id"], None, f"{type(error).__name__}: {error}"[:500])
    return Outcome(row["delivery_id"], status, None if 200 <= status < 300 else f"HTTP {status}")


async def send_due(pool: asyncpg.Pool, schema: str, settings: Settings, client: httpx.AsyncClient) -> int:
    """One pass: send every delivery due now (up to BATCH); returns how many were attempted."""
    now = datetime.now(UTC)
    async with transaction(pool, schema) as conn:
        rows = await store.claim_due(conn, now, BATCH, now + lease(settings))
    if not rows:
        return 0
    key = settings.jobmeter_webhook_signing_key.get_secret_value()
    timeout = settings.jobmeter_webhook_timeout_seconds
    outcomes = await asyncio.gather(*(attempt(client, row, key, timeout) for row in rows))
    async with transaction(pool, schema) as conn:
        for row, outcome in zip(rows, outcomes, strict=True):
            at = datetime.now(UTC)
            if outcome.ok:
                assert outcome.status is not None
                await store.delivered(conn, outcome.delivery_id, outcome.status, at)
                continue
            delay = retry_delay(row["attempts"] + 1, settings.jobmeter_webhook_retry_scale)
            await store.attempt_failed(conn, outcome.delivery_id, outcome.status, outcome.error or "", at,
                                       at + delay if delay is not None else None)
            log.warning("webhook delivery failed", delivery_id=str(outcome.delivery_id), account_id=row["account_id"],
                        url=row["url"], status=outcome.status, error=outcome.error, attempts=row["attempts"] + 1,
                        given_up=delay is None)
    return len(rows)


async def run_webhook_sender(res: Resources, schema: str) -> None:
    """Send deliveries until cancelled; back off while Postgres is unreachable."""
    settings = res.settings
    async with httpx.AsyncClient(timeout=settings.jobmeter_webhook_timeout_seconds, follow_redirects=False) as client:

        async def one_pass() -> bool:
            return await send_due(res.pool_for(schema), schema, settings, client) > 0

        await poll("webhook sender", one_pass, PollPolicy(idle=settings.jobmeter_webhook_poll_seconds))
