"""ASGI middleware for upstream APIs served through RapidAPI, and the one call the app makes to bill a job.

Every request must carry `X-RapidAPI-Proxy-Secret` (compared in constant time with RAPIDAPI_PROXY_SECRET);
without it the request is refused with 403 and a reason. `X-RapidAPI-User` is mapped to its account, which
the app finds in `request.state.account_id`, beside `request.state.channel == "rapidapi"`, to stamp on the
JobCompleted it publishes.

Billing rule (jobs are RapidAPI's billing unit, in the configured billing object, e.g. `jobs`):
- the app calls `declare_job_completed(request, api, job_id)` on every response that reports a job complete:
  the response that finishes a sync job, and every poll/result response that shows an async job done;
- the job is declared (`X-RapidAPI-Billing: jobs=1`) on the first such response only, never on the submit,
  and never again, in any process;
- every other response carries `X-RapidAPI-Billing: jobs=0`, because RapidAPI counts each request as 1 unless
  told otherwise: without it a submit and each poll would be billed too;
- a response with status >= 500 declares nothing (RapidAPI does not count it), so the next poll declares it.
Every declaration is recorded as a BillingUnitsDeclared fact before its header leaves, so we know what RapidAPI
was told.
"""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from events.codec import describe
from events.rapidapi import RapidApiUser
from events.types import ApiName, JobId
from services.rapidapi.desk import PendingJob, RapidApiDesk, plan_of

log = structlog.get_logger(__name__)

BILLING_HEADER = "X-RapidAPI-Billing"
PENDING = "rapidapi_pending_jobs"
_USER = TypeAdapter(RapidApiUser)
_API = TypeAdapter(ApiName)
_JOB = TypeAdapter(JobId)


def declare_job_completed(request: Request, api: str, job_id: str, *, count: int = 1) -> bool:
    """Bill this job to RapidAPI on this response, unless it was declared before. Call it on every response
    that reports the job complete. Returns False for a request that did not come through RapidAPI."""
    pending: list[PendingJob] | None = getattr(request.state, PENDING, None)
    if pending is None:
        return False
    if count < 1:
        raise ValueError("a job is declared with a count of at least 1")
    pending.append(PendingJob(_API.validate_python(api), _JOB.validate_python(job_id), count))
    return True


class RapidApiGateway:
    """Pure ASGI middleware: `app.add_middleware(RapidApiGateway, desk=desk)`; open the desk in the lifespan."""

    def __init__(self, app: ASGIApp, desk: RapidApiDesk) -> None:
        self.app = app
        self.desk = desk
        self.secret = desk.settings.rapidapi_proxy_secret.get_secret_value().encode()
        if not self.secret:  # an empty secret would match an empty header: refuse to serve rather than open up
            raise ValueError("RAPIDAPI_PROXY_SECRET is unset: set it to the proxy secret of your RapidAPI dashboard")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = headers.get("x-rapidapi-proxy-secret")
        if given is None:
            await _refuse(send, 403, "missing X-RapidAPI-Proxy-Secret: requests must come through RapidAPI")
            return
        if not hmac.compare_digest(given.encode(), self.secret):
            await _refuse(send, 403, "invalid X-RapidAPI-Proxy-Secret")
            return
        try:
            user = _USER.validate_python(headers.get("x-rapidapi-user", ""))
        except ValidationError as error:
            await _refuse(send, 400, f"X-RapidAPI-User: {describe(error)}", self.desk.billing_object)
            return
        try:
            account_id = await self.desk.identify(user, plan_of(headers.get("x-rapidapi-subscription")), _now())
        except Exception as error:  # Kafka or Postgres unreachable: the user's identity cannot be recorded yet
            log.error("marketplace identity not recorded", rapidapi_user=user, error=str(error))
            reason = "the marketplace identity could not be recorded; retry shortly"
            await _refuse(send, 503, reason, self.desk.billing_object)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        pending: list[PendingJob] = []
        state.update(account_id=account_id, channel="rapidapi", rapidapi_user=user, **{PENDING: pending})

        async def send_with_billing(message: Message) -> None:
            if message["type"] == "http.response.start":
                units = await self._declare(user, account_id, pending, message["status"])
                MutableHeaders(scope=message)[BILLING_HEADER] = f"{self.desk.billing_object}={units}"
            await send(message)

        await self.app(scope, receive, send_with_billing)

    async def _declare(self, user: str, account_id: str, pending: list[PendingJob], status: int) -> int:
        if not pending or status >= 500:
            return 0
        try:
            return await self.desk.declare(user, account_id, pending, _now())
        except Exception as error:
            # Not declared and not claimed: the next response that reports the job complete declares it.
            log.error("job declaration not recorded", jobs=[(p.api, p.job_id) for p in pending], error=str(error))
            return 0


def _now() -> datetime:
    return datetime.now(UTC)


async def _refuse(send: Send, status: int, reason: str, billing_object: str | None = None) -> None:
    """A JSON refusal; one that RapidAPI relays to its user bills nothing (`<object>=0`)."""
    body = json.dumps({"detail": reason}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if billing_object is not None:
        headers.append((BILLING_HEADER.lower().encode(), f"{billing_object}=0".encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
