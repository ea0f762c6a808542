"""A sample upstream API, wired the way a jobmeter user wires their own: copy it.

Four toy API surfaces, named after JOBMETER_APIS: the first two are synchronous (the request does the work and
its response completes the job), the other two asynchronous (`POST` submits and answers a job id at once;
`GET` polls: `pending`, then `done` with the result).

In front of them:
- direct traffic passes the key check (`KeyCheckMiddleware`, which asks jobmeter's `GET /v1/keys/check`
  about the caller's `Authorization: Bearer <key>`);
- marketplace traffic (any `X-RapidAPI-*` header) passes the RapidAPI middleware instead, which verifies the
  proxy secret (so such a header is no way around the key check) and maps the marketplace user to an account.

Billing: exactly one `JobCompleted` per job, published with `events.publisher.Publisher` when the job
completes: for a sync job before its response is sent, for an async job when its work finishes (never on
submit). An async job shows `done` only once Kafka has its event, so whatever a caller saw done is billed.
A caller may send `Idempotency-Key`: scoped to its account, it becomes the job id, so a retried request is the
same job, billed once.

Jobs of async surfaces live in this process's memory for an hour after they are done: a sample, not a job queue.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from events.jobs import JobCompleted
from events.publisher import Publisher
from events.topics import Topics
from events.types import JobId
from jobmeter.settings import Settings
from projections.db import create_pool
from services.gateway.keycheck import KeyCheckMiddleware, api_from_path
from services.platform.serving import serving
from services.rapidapi.desk import RapidApiDesk
from services.rapidapi.middleware import RapidApiGateway, declare_job_completed

log = structlog.get_logger(__name__)

PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs"})
KEEP_DONE_SECONDS = 3600.0
_JOB_ID = TypeAdapter(JobId)


# -- the toy work ------------------------------------------------------------------------------------------------

def toy_work(api: str, text: str) -> dict[str, Any]:
    """Something cheap and deterministic per surface, so the sample returns real-looking answers."""
    words = text.split()
    if api.startswith("extract"):
        return {"words": len(words), "numbers": [w for w in words if w.strip(".,").isdigit()]}
    if api.startswith("classify"):
        return {"label": "question" if text.rstrip().endswith("?") else "statement"}
    if api.startswith("translate"):
        return {"text": " ".join(reversed(words))}
    if api.startswith("summarize"):
        return {"summary": " ".join(words[:8])}
    return {"length": len(text)}


class Work(BaseModel):
    text: str = Field(default="", max_length=10_000)


@dataclass
class AsyncJob:
    api: str
    job_id: str
    account_id: str
    channel: str
    state: str = "pending"  # pending → done (only once Kafka has its JobCompleted)
    result: dict[str, Any] | None = None
    done_at: float | None = None  # monotonic; finished jobs are forgotten KEEP_DONE_SECONDS later


# -- the wiring ---------------------------------------------------------------------------------------------------

class ChannelDispatch:
    """Marketplace requests (any X-RapidAPI-* header) to the RapidAPI middleware, everything else to the key
    check; public paths (health, docs) to neither."""

    def __init__(self, app: ASGIApp, *, direct: Callable[[ASGIApp], ASGIApp],
                 marketplace: Callable[[ASGIApp], ASGIApp] | None) -> None:
        self.app = app
        self.direct = direct(app)
        self.marketplace = marketplace(app) if marketplace else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        through_marketplace = any(k.startswith(b"x-rapidapi-") for k, _ in scope["headers"])
        if through_marketplace and self.marketplace is not None:
            await self.marketplace(scope, receive, send)
        else:
            await self.direct(scope, receive, send)


def caller(request: Request) -> tuple[str, str]:
    """(account, channel) as the middleware in front established them."""
    key = getattr(request.state, "jobmeter_key", None)
    if key is not None:
        return str(key["account_id"]), "direct"
    return str(request.state.account_id), str(request.state.channel)


def job_id_from(request: Request) -> str:
    """A new id, or the caller's Idempotency-Key scoped to its account: a job is identified by (api, job_id)
    everywhere, so two customers who pick the same key must still be two jobs, each billed to its own."""
    given = request.headers.get("idempotency-key")
    if given is None:
        return uuid.uuid4().hex
    try:
        return _JOB_ID.validate_python(f"{caller(request)[0]}:{given}")
    except ValidationError:
        raise HTTPException(422, detail="Idempotency-Key must be a printable id without spaces") from None


def create_gateway(
    settings: Settings,
    *,
    jobmeter_url: str | None = None,
    keycheck_transport: httpx.AsyncBaseTransport | None = None,
    async_seconds: float = 1.0,
) -> FastAPI:
    """The sample gateway. `jobmeter_url` is where jobmeter's HTTP app answers the key check (default: this
    machine's JOBMETER_HTTP_PORT); `async_seconds` is how long an async job takes."""
    apis = list(settings.jobmeter_apis)
    sync_apis, async_apis = apis[: (len(apis) + 1) // 2], apis[(len(apis) + 1) // 2 :]
    check_url = (jobmeter_url or f"http://127.0.0.1:{settings.jobmeter_http_port}").rstrip("/") + "/v1/keys/check"
    key_checks: list[KeyCheckMiddleware] = []

    def key_check(inner: ASGIApp) -> ASGIApp:
        # Each call names its surface, so a cap on one surface stops only that one.
        made = KeyCheckMiddleware(inner, check_url=check_url, transport=keycheck_transport, api_of=api_from_path(apis))
        key_checks.append(made)  # closed with the app
        return made
    desk = RapidApiDesk(settings)
    topics = Topics(settings.jobmeter_topic_prefix)
    publisher = Publisher(settings.kafka_bootstrap_servers, producer="sample-gateway", topics=topics)
    jobs: dict[tuple[str, str], AsyncJob] = {}
    running: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await publisher.start()
            stack.push_async_callback(publisher.stop)
            pool = await create_pool(settings.database_url)
            stack.push_async_callback(pool.close)
            users = None
            if settings.database_url_for("rapidapi") != settings.database_url:  # the projection in its own database
                users = await create_pool(settings.database_url_for("rapidapi"), min_size=0)
                stack.push_async_callback(users.close)
            await desk.open(pool, publisher, users)
            stack.push_async_callback(_close, key_checks)
            stack.push_async_callback(_cancel, running)
            yield

    app = FastAPI(title="jobmeter sample gateway", version="0.1.0", lifespan=lifespan)
    app.state.sync_apis, app.state.async_apis, app.state.jobs = sync_apis, async_apis, jobs
    app.add_middleware(
        ChannelDispatch, direct=key_check,
        marketplace=lambda inner: RapidApiGateway(inner, desk),
    )

    async def completed(request: Request, api: str, job_id: str, mode: str) -> None:
        """Publish the job's one JobCompleted; returns once Kafka has it."""
        account_id, channel = caller(request)
        await publisher.publish(JobCompleted(
            account_id=account_id, api=api, job_id=job_id, channel=channel, mode=mode, completed_at=datetime.now(UTC),
        ))

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "sync": sync_apis, "async": async_apis}

    for api in sync_apis:
        _sync_surface(app, api, completed)
    for api in async_apis:
        _async_surface(app, api, jobs, running, publisher, async_seconds)
    return app


def _sync_surface(app: FastAPI, api: str, completed: Callable[..., Any]) -> None:
    @app.post(f"/v1/{api}", name=f"{api} (sync)")
    async def run_sync(work: Work, request: Request) -> JSONResponse:
        job_id = job_id_from(request)
        result = toy_work(api, work.text)
        try:
            await completed(request, api, job_id, "sync")
        except Exception as error:  # an unbilled result is not handed out; the caller retries
            log.warning("job not recorded", api=api, job_id=job_id, error=str(error))
            return JSONResponse({"detail": "the job could not be recorded; retry with the same Idempotency-Key",
                                 "job_id": job_id}, status_code=503)
        declare_job_completed(request, api, job_id)
        return JSONResponse({"job_id": job_id, "status": "done", "result": result})


def _async_surface(app: FastAPI, api: str, jobs: dict[tuple[str, str], AsyncJob], running: set[asyncio.Task[None]],
                   publisher: Publisher, seconds: float) -> None:
    async def finish(job: AsyncJob, text: str) -> None:
        await asyncio.sleep(seconds)  # the work
        job.result = toy_work(api, text)
        event = JobCompleted(account_id=job.account_id, api=api, job_id=job.job_id, channel=job.channel,
                             mode="async", completed_at=datetime.now(UTC))
        delay = 0.5
        while True:  # the job is done; it is not "done" to the caller until its event is on Kafka
            try:
                await publisher.publish(event)
                break
            except Exception as error:  # retried until Kafka takes it; same event id each time
                log.warning("job not recorded yet", api=api, job_id=job.job_id, error=str(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
        job.state, job.done_at = "done", time.monotonic()

    @app.post(f"/v1/{api}/jobs", status_code=202, name=f"{api} (submit)")
    async def submit(work: Work, request: Request) -> JSONResponse:
        job_id = job_id_from(request)
        account_id, channel = caller(request)
        forget_old(jobs)
        existing = jobs.get((api, job_id))
        if existing is None:
            existing = AsyncJob(api, job_id, account_id, channel)
            jobs[(api, job_id)] = existing
            task = asyncio.create_task(finish(existing, work.text))
            running.add(task)
            task.add_done_callback(running.discard)
        return JSONResponse({"job_id": job_id, "status": existing.state, "poll": f"/v1/{api}/jobs/{job_id}"},
                            status_code=202)

    @app.get(f"/v1/{api}/jobs/{{job_id}}", name=f"{api} (poll)")
    async def poll(job_id: str, request: Request) -> JSONResponse:
        job = jobs.get((api, job_id))
        if job is None or job.account_id != caller(request)[0]:
            raise HTTPException(404, detail=f"no {api} job {job_id!r} for this account")
        if job.state != "done":
            return JSONResponse({"job_id": job_id, "status": "pending"})
        declare_job_completed(request, api, job_id)  # the middleware bills RapidAPI on the first "done" only
        return JSONResponse({"job_id": job_id, "status": "done", "result": job.result})


def forget_old(jobs: dict[tuple[str, str], AsyncJob]) -> None:
    """Results are kept an hour after they are done: long enough to be fetched, not forever."""
    cutoff = time.monotonic() - KEEP_DONE_SECONDS
    for key in [k for k, j in jobs.items() if j.done_at is not None and j.done_at < cutoff]:
        del jobs[key]


async def _close(checks: list[KeyCheckMiddleware]) -> None:
    for check in checks:
        await check.aclose()


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def running_gateway(settings: Settings, *, port: int, host: str = "127.0.0.1",
                          **options: Any) -> AsyncIterator[str]:
    """The gateway served over HTTP inside this event loop (the demo drives its traffic through it); yields its
    address. `options` go to `create_gateway`."""
    async with serving(create_gateway(settings, **options), port=port, host=host) as url:
        yield url


def serve_gateway(settings: Settings, port: int, *, host: str = "127.0.0.1", jobmeter_url: str | None = None) -> None:
    """`jobmeter run gateway --port …`: serve the sample gateway in the foreground until Ctrl-C."""
    uvicorn.run(create_gateway(settings, jobmeter_url=jobmeter_url), host=host, port=port, log_config=None)
