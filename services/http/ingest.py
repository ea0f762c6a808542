"""`POST /v1/jobs/completed`: one job (a JSON object) or a batch (a JSON array)."""

from __future__ import annotations

import json
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from services.http.auth import require_ingest
from services.ledger.ingest import ingest
from services.platform.transient import TRANSIENT

router = APIRouter(tags=["ingest"])
log = structlog.get_logger(__name__)


# A generous ceiling per item, so an oversized body is refused before it is read into memory.
MAX_ITEM_BYTES = 4096


def problem(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"detail": reason}, status_code=status)


@router.post(
    "/v1/jobs/completed",
    dependencies=[Depends(require_ingest)],
    status_code=202,
    responses={400: {}, 401: {}, 413: {}, 422: {}, 503: {}},
)
async def jobs_completed(request: Request) -> JSONResponse:
    """Accept completed jobs. 202 once Kafka has every accepted item; invalid items are refused one by one."""
    settings = request.app.state.settings
    limit = settings.jobmeter_ingest_max_batch
    max_bytes = limit * MAX_ITEM_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        return problem(413, f"body over {max_bytes} bytes; send at most {limit} items a request")
    raw = await request.body()
    if len(raw) > max_bytes:
        return problem(413, f"body over {max_bytes} bytes; send at most {limit} items a request")
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
        return problem(413, f"batch of {len(items)} items is over the limit of {limit}")
    try:
        result = await ingest(items, request.app.state.runtime.res)
    except TRANSIENT as error:  # a restarting Kafka or Postgres: a retryable 503, never a 500
        # Nothing was acknowledged: the client retries the same batch, and duplicates are recognised.
        log.warning("ingest unavailable", error=repr(error))
        response = problem(503, f"the event log or database is unavailable ({type(error).__name__}); retry")
        response.headers["Retry-After"] = "1"
        return response
    valid = result.accepted + result.duplicates
    return JSONResponse(result.as_json(), status_code=202 if valid else 422)
