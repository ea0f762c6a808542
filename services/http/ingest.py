"""`POST /v1/jobs/completed`: one job (a JSON object) or a batch (a JSON array)."""

from __future__ import annotations

import json
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from events.jobs import JobCompleted
from jobmeter import metrics
from services.http.auth import IngestRoute
from services.http.problems import Invalid, problems
from services.ledger.admission import Admission
from services.ledger.ingest import IngestResult, ingest, ingest_valid, read_batch
from services.platform.transient import TRANSIENT

router = APIRouter(tags=["ingest"], route_class=IngestRoute)
log = structlog.get_logger(__name__)


# A generous ceiling per item: a body may hold the batch limit's worth (services.http.limits answers 413 past it,
# before it is read into memory).
MAX_ITEM_BYTES = 4096


def problem(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"detail": reason}, status_code=status)


def retry_later(reason: str, seconds: int) -> JSONResponse:
    """503 + Retry-After: nothing of the batch was taken; the client sends it again (duplicates are recognised)."""
    response = problem(503, reason)
    response.headers["Retry-After"] = str(seconds)
    return response


class ItemError(BaseModel):
    index: int = Field(description="The item's position in the batch, from 0.")
    errors: list[dict[str, str]] = Field(description="`field` and `message`, per problem.")


class Ingested(BaseModel):
    accepted: int
    duplicates: int = Field(description="Jobs already in the log (same api and job_id), counted once.")
    rejected: int
    errors: list[ItemError]
    unknown_accounts: list[str] = Field(description="Accepted, but for accounts the registry does not know.")


# The body is read by hand (one item or a batch, each item judged on its own); the document still says what it is.
JOB = JobCompleted.model_json_schema()
JOBS = {"oneOf": [JOB, {"type": "array", "items": JOB, "minItems": 1}]}


@router.post(
    "/v1/jobs/completed",
    status_code=202,
    response_model=Ingested,
    responses={
        **problems(400, 401, 413, 503),
        422: {"model": Ingested | Invalid, "description": "No item could be accepted, or the body is not jobs."},
    },
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": JOBS}}}},
)
async def jobs_completed(request: Request) -> JSONResponse:
    """Accept completed jobs. 202 once Kafka has every accepted item; invalid items are refused one by one. 503
    with Retry-After when the log or the database is unavailable, or (JOBMETER_INGEST_MAX_LAG) while a consumer is
    too far behind: nothing of the batch was taken; send it again."""
    settings = request.app.state.settings
    admission: Admission = request.app.state.admission
    if (why := admission.refusal()) is not None:  # before the body is read: an engine behind does no more work
        metrics.INGEST_REFUSED.inc()
        return retry_later(why, admission.retry_after)
    limit = settings.jobmeter_ingest_max_batch
    raw = await request.body()
    try:
        fast = read_batch(raw, settings.jobmeter_apis, limit)
        result: IngestResult | JSONResponse
        if fast is not None:  # a batch (the usual body): read in one pass
            result = await ingest_valid(*fast, request.app.state.runtime.res)
        else:
            result = await _item_by_item(raw, limit, request)
    except TRANSIENT as error:  # a restarting Kafka or Postgres: a retryable 503, never a 500
        log.warning("ingest unavailable", error=repr(error))
        return retry_later(f"the event log or database is unavailable ({type(error).__name__}); retry", 1)
    if isinstance(result, JSONResponse):
        return result
    valid = result.accepted + result.duplicates
    return JSONResponse(result.as_json(), status_code=202 if valid else 422)


async def _item_by_item(raw: bytes, limit: int, request: Request) -> IngestResult | JSONResponse:
    """Any body but a batch: parsed as JSON, then each item judged on its own."""
    try:
        body: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return problem(400, f"malformed JSON: {error}")
    except RecursionError:
        return problem(400, "malformed JSON: nested too deeply")
    if isinstance(body, dict):
        items = [body]
    elif isinstance(body, list):
        items = body
    else:
        return problem(422, "expected a JSON object (one job) or an array of them (a batch)")
    if not items:
        return problem(422, "the batch is empty")
    if len(items) > limit:
        reason = f"batch of {len(items)} items is over the limit of {limit}; send at most {limit} items a request"
        return problem(413, reason)
    return await ingest(items, request.app.state.runtime.res)
