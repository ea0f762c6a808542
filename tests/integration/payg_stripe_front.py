"""PaygFakeStripeFront: a small local HTTP server in front of stripe-mock, for the PAYG tests.

It forwards every request to the real stripe-mock and records it (method, path, Idempotency-Key), so a test can
count the PaymentIntents that reached Stripe and see the keys they carried. stripe-mock has no test-card errors,
so when `decline` is set, POST /v1/payment_intents alone is answered here, by this fake, with a Stripe-shaped
402 card error (`card_declined` or `authentication_required`) instead of being forwarded.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FORWARDED_HEADERS = ("authorization", "idempotency-key", "stripe-version", "content-type", "user-agent")


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    idempotency_key: str | None
    body: bytes


@dataclass
class PaygFakeStripeFront:
    upstream: str
    decline: str | None = None  # a Stripe error code for POST /v1/payment_intents, e.g. "card_declined"
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def payment_intents(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path == "/v1/payment_intents"]

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.seen.append(Seen(request.method, request.url.path, request.headers.get("idempotency-key"), body))
        if self.decline and request.method == "POST" and request.url.path == "/v1/payment_intents":
            return self.card_error(self.decline)
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        async with httpx.AsyncClient(base_url=self.upstream, timeout=20) as client:
            answer = await client.request(
                request.method, request.url.path, params=request.query_params, content=body, headers=headers
            )
        return Response(answer.content, answer.status_code, media_type=answer.headers.get("content-type"))

    @staticmethod
    def card_error(code: str) -> JSONResponse:
        intent = {"id": f"pi_fake{secrets.token_hex(8)}", "object": "payment_intent",
                  "status": "requires_payment_method" if code == "card_declined" else "requires_action"}
        error = {
            "type": "card_error", "code": code, "message": f"fake decline: {code}", "payment_intent": intent,
            **({"decline_code": "generic_decline"} if code == "card_declined" else {}),
        }
        return JSONResponse({"error": error}, status_code=402)


@asynccontextmanager
async def payg_fake_stripe_front(upstream: str) -> AsyncIterator[PaygFakeStripeFront]:
    front = PaygFakeStripeFront(upstream)
    app = Starlette(routes=[Route("/{path:path}", front.handle, methods=["GET", "POST", "DELETE"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 — uvicorn only exposes a flag
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    front.url = f"http://127.0.0.1:{port}"
    try:
        yield front
    finally:
        server.should_exit = True
        await task
