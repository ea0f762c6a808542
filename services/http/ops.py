"""Health and metrics for operators and orchestrators."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

router = APIRouter(tags=["operations"])


class Healthy(BaseModel):
    status: Literal["ok"]
    consumers: list[str]
    # Serving, but an operator should know (topics holding fewer copies than JOBMETER_REPLICATION_FACTOR).
    warnings: list[str]


class HeldPartition(BaseModel):
    consumer: str
    topic: str
    partition: int
    offset: int
    reason: str


class Unhealthy(BaseModel):
    status: Literal["unhealthy"]
    reason: str
    held: list[HeldPartition] = Field(
        default_factory=list,
        description="Partitions a consumer holds at a record it cannot read yet: upgrade the consumer.",
    )


@router.get("/healthz", response_model=Healthy, responses={503: {"model": Unhealthy, "description": "Not healthy."}})
async def healthz(request: Request) -> JSONResponse:
    """200 when Postgres answers and the process is running; 503 with the reason otherwise, among them partitions
    a consumer holds at a record it cannot read yet (a newer version or an unknown type), and key events the key
    index could not read for the same reason."""
    runtime = request.app.state.runtime
    try:
        await runtime.res.ping(timeout=2)
    except Exception as error:  # any failure is "not healthy", reported with its reason
        return JSONResponse({"status": "unhealthy", "reason": f"postgres: {error}"}, status_code=503)
    held = [HeldPartition(consumer=name, topic=topic, partition=partition, offset=hold.offset, reason=hold.reason)
            for name, folder in sorted(runtime.folders.items())
            for (topic, partition), hold in sorted(folder.held.items())]
    index = getattr(request.app.state, "key_index", None)
    unreadable = [f"the key index cannot read {u}" for u in (index.unreadable if index is not None else [])]
    if held or unreadable:
        reason = "; ".join([*(f"{h.consumer} holds {h.topic}[{h.partition}] at offset {h.offset}: {h.reason}"
                              for h in held), *unreadable])
        return JSONResponse({"status": "unhealthy", "reason": reason,
                             "held": [h.model_dump() for h in held]}, status_code=503)
    return JSONResponse({"status": "ok", "consumers": sorted(runtime.folders), "warnings": runtime.res.warnings})


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"description": "Prometheus's text exposition format."}})
async def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
