"""Health and metrics for operators and orchestrators."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from services.engine.health import held_partitions

router = APIRouter(tags=["operations"])


class HeldPartition(BaseModel):
    consumer: str
    topic: str
    partition: int
    offset: int
    reason: str


class Worker(BaseModel):
    """A consumer's worker process under `jobmeter run all`."""

    name: str
    pid: int | None = Field(description="null while it is being started again")
    restarts: int
    last_exit_code: int | None
    problem: str | None = Field(description="null when the worker is healthy")


class Healthy(BaseModel):
    status: Literal["ok"]
    consumers: list[str]
    # Serving, but an operator should know (topics holding fewer copies than JOBMETER_REPLICATION_FACTOR).
    warnings: list[str]
    workers: list[Worker] = Field(default_factory=list, description="`run all` only: its worker processes")


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
    a consumer holds at a record it cannot read yet (a newer version or an unknown type), key events the key index
    could not read for the same reason or has not caught up with yet, and under `run all` a worker that is down,
    starting, stuck or holding a partition."""
    runtime = request.app.state.runtime
    try:
        await runtime.res.ping(timeout=2)
    except Exception as error:  # any failure is "not healthy", reported with its reason
        return JSONResponse({"status": "unhealthy", "reason": f"postgres: {error}"}, status_code=503)
    supervised = getattr(request.app.state, "workers", None)
    workers = supervised() if supervised is not None else []
    held = [HeldPartition(**h) for h in held_partitions(runtime)]
    held += [HeldPartition(**h) for w in workers for h in w.held]
    index = getattr(request.app.state, "key_index", None)
    unreadable = [f"the key index cannot read {u}" for u in (index.unreadable if index is not None else [])]
    if index is not None and not index.ready:
        unreadable.append("the key index is loading (catching up with the keys and accounts topics)")
    listed = [Worker(name=w.name, pid=w.pid, restarts=w.restarts, last_exit_code=w.last_exit_code,
                     problem=w.problem).model_dump() for w in workers]
    problems = [*(w.problem for w in workers if w.problem and not w.held),
                *(f"{h.consumer} holds {h.topic}[{h.partition}] at offset {h.offset}: {h.reason}" for h in held),
                *unreadable]
    if problems:
        return JSONResponse({"status": "unhealthy", "reason": "; ".join(problems),
                             "held": [h.model_dump() for h in held], "workers": listed}, status_code=503)
    return JSONResponse({"status": "ok", "consumers": sorted(runtime.folders), "warnings": runtime.res.warnings,
                         "workers": listed})


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"description": "Prometheus's text exposition format."}})
async def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
