"""Sends the meter outbox to Stripe: one meter event per customer and closed window, exactly once in effect.

Order of steps, and what a crash between them does:
1. the fold recorded the report (`pending`) with the jobs' positions — a crash before leaves the jobs unread;
2. a claim freezes its value and leases it (`sending`) — a crash after it leaves the lease to run out;
3. the meter event goes to Stripe with the report's identifier, under an idempotency key new for every claim and
   request (`meter_request_key`: Stripe replays a saved 500 to a retry under the same key);
4. the report is marked `sent` and `MeterUsageReported` is queued in the same transaction — a crash between
   3 and 4 sends the same identifier and value again after the lease, which Stripe drops as a duplicate.
A report Stripe refuses for good (at once, or later in a meter error report for the v2 stream) is `failed`, with
the reason; `jobmeter stripe resend` puts it back in line once the cause is fixed.
Runs in any number of processes: claims skip rows another sender holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import stripe
import structlog

from events.envelope import utcnow
from jobmeter.settings import Settings
from projections.db import transaction
from projections.meter import reports
from projections.meter.reports import Report
from projections.meter.windows import Verdict, expiry_detail, send_verdict
from services.platform.poll import PollPolicy, poll
from services.platform.rate_limit import TokenBucket
from services.platform.resources import Resources
from services.stripe_adapter.client import MeterEvent, MeterEventSink, is_retryable, make_client, meter_events_for
from services.stripe_adapter.meter_stream import StripeMeterEventStream

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SendOutcome:
    sent: int = 0
    postponed: int = 0
    unreportable: int = 0

    @property
    def claimed(self) -> int:
        return self.sent + self.postponed + self.unreportable


class MeterSender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        sink: MeterEventSink,
        *,
        event_name: str,
        lateness_seconds: float,
        schema: str = "meter",
        concurrency: int = 16,
        lease: timedelta = timedelta(minutes=5),
        retry_after: timedelta = timedelta(seconds=30),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.pool = pool
        self.sink = sink
        self.event_name = event_name
        self.lateness_seconds = lateness_seconds
        self.schema = schema
        self.lease = lease
        self.retry_after = retry_after
        self.clock = clock
        self._slots = asyncio.Semaphore(concurrency)

    async def send_due(self, *, limit: int = 500) -> SendOutcome:
        """Claim what is due and deliver it; returns what happened to each claimed report."""
        async with transaction(self.pool, self.schema) as conn:
            at = self.clock()
            # Refused windows that crossed Stripe's age limit can never be resent: they end expired, here, so
            # that nothing waits on the doctor for a resend that cannot work.
            aged = await reports.expire_unsendable(conn, at, limit)
            claimed = await reports.claim_due(
                conn, at, lateness_seconds=self.lateness_seconds, lease=self.lease, limit=limit
            )
        if not claimed:
            return SendOutcome(unreportable=len(aged))
        now = self.clock()
        verdicts = {r.key(): send_verdict(r.window_start, r.window_seconds, self.lateness_seconds, now)
                    for r in claimed}
        expired = [r for r in claimed if verdicts[r.key()] is Verdict.EXPIRED]
        # WAIT cannot happen for a window the claim found closed; such a report simply stays leased.
        ready = [r for r in claimed if verdicts[r.key()] is Verdict.SEND]
        size = self.sink.batch_size
        batches = [ready[i:i + size] for i in range(0, len(ready), size)]
        results: list[str] = [await self._expire(r) for r in expired]
        for outcome in await asyncio.gather(*(self._deliver(b) for b in batches)):
            results.extend(outcome)
        return SendOutcome(
            sent=results.count("sent"), postponed=results.count("postponed") + len(claimed) - len(results),
            unreportable=results.count("unreportable") + len(aged),
        )

    async def _expire(self, report: Report) -> str:
        return (await self._unreportable([report], "expired", expiry_detail(report.last_error)))[0]

    async def _deliver(self, batch: list[Report]) -> list[str]:
        async with self._slots:
            # Waiting for a slot through a long outage can outlast the lease; a report whose lease ran out may
            # be another sender's now, so it is left to that sender (or the next pass) rather than sent twice.
            now = self.clock()
            live = [r for r in batch if r.claimed_until is None or r.claimed_until > now]
            results = await self._send(live) if live else []
        return results + ["postponed"] * (len(batch) - len(live))

    async def _send(self, batch: list[Report]) -> list[str]:
        events = [MeterEvent(self.event_name, r.customer_id, r.value, r.window_start, r.identifier, r.attempts)
                  for r in batch]
        try:
            if len(events) == 1:
                await self.sink.send(events[0])
            else:
                await self.sink.send_batch(events)
        except stripe.StripeError as error:
            if is_retryable(error) or not isinstance(error, stripe.InvalidRequestError | stripe.IdempotencyError):
                # Outages, exhausted retries, a bad key: nothing wrong with the reports themselves.
                return await self._postpone(batch, error)
            return await self._unreportable(batch, "rejected", f"Stripe refused it: {error.user_message or error}")
        except TimeoutError as error:
            return await self._postpone(batch, error)
        async with transaction(self.pool, self.schema) as conn:
            for report in batch:
                await reports.mark_sent(conn, report, self.event_name, self.clock())
        for report in batch:
            log.info("meter usage reported", identifier=report.identifier, account_id=report.account_id,
                     value=report.value)
        return ["sent"] * len(batch)

    async def _postpone(self, batch: list[Report], error: BaseException) -> list[str]:
        log.warning("meter events not delivered, will retry", identifiers=[r.identifier for r in batch],
                    error=str(error))
        async with transaction(self.pool, self.schema) as conn:
            for report in batch:
                await reports.postpone(conn, report, self.clock() + self.retry_after,
                                       f"{type(error).__name__}: {error}")
        return ["postponed"] * len(batch)

    async def _unreportable(self, batch: list[Report], reason: reports.Unreportable, detail: str) -> list[str]:
        async with transaction(self.pool, self.schema) as conn:
            for report in batch:
                log.error("meter usage cannot be reported", identifier=report.identifier, reason=reason,
                          detail=detail, account_id=report.account_id, value=report.value)
                await reports.mark_unreportable(conn, report, reason, detail, self.clock())
        return ["unreportable"] * len(batch)


def sink_for(settings: Settings) -> MeterEventSink:
    """v1 meter events (one a request) by default; the v2 stream (100 a request) when JOBMETER_METER_TRANSPORT=v2."""
    if settings.jobmeter_meter_transport == "v2":
        bucket = TokenBucket(settings.jobmeter_stripe_requests_per_second)
        return StripeMeterEventStream(make_client(settings), bucket)
    return meter_events_for(settings)


def sender_for(res: Resources, schema: str = "meter", *, sink: MeterEventSink | None = None) -> MeterSender:
    s = res.settings
    return MeterSender(
        res.pool_for(schema), sink or sink_for(s), event_name=s.stripe_meter_event_name,
        lateness_seconds=s.jobmeter_meter_lateness_seconds, schema=schema,
        concurrency=s.jobmeter_meter_send_concurrency, lease=timedelta(seconds=s.jobmeter_meter_lease_seconds),
    )


async def run_meter_sender(res: Resources, schema: str = "meter") -> None:
    """Send forever (until cancelled); a failure of one pass is logged and the next pass retries."""
    sender = sender_for(res, schema)

    async def one_pass() -> bool:
        # Claimed rows of a failed pass stay leased and are retried once the lease runs out.
        return (await sender.send_due()).claimed > 0

    await poll("meter sender", one_pass, PollPolicy(idle=res.settings.jobmeter_meter_poll_seconds))
