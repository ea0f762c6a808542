"""PaygFakeStripeFront: a small local HTTP server in front of stripe-mock, for the PAYG tests.

It forwards every request to the real stripe-mock and records it (method, path, Idempotency-Key), so a test can
count the PaymentIntents that reached Stripe and see the keys they carried. stripe-mock has no test-card errors,
so when `decline` is set, POST /v1/payment_intents alone is answered here, by this fake, with a Stripe-shaped
402 card error (`card_declined` or `authentication_required`) instead of being forwarded.

stripe-mock keeps no state either: GET /v1/payment_intents/{id} answers a fixture (`requires_payment_method`, no
payment method, 1099 usd) whatever was created. For a PaymentIntent listed in `intents` (every one POSTed through
this front is, with what it was created with; a test adds others, e.g. a top-up's), GET /v1/payment_intents/{id}
is still forwarded, so stripe-mock checks the route, and this fake puts the listed fields over its answer; a test
sets the status a recharge's PaymentIntent has reached with `settle(id, status)`.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FORWARDED_HEADERS = ("authorization", "idempotency-key", "stripe-version", "content-type", "user-agent")
INTENT_PATH = re.compile(r"^/v1/payment_intents/(pi_[A-Za-z0-9_]+)$")


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
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → fields GET answers with
    url: str = ""

    def payment_intents(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path == "/v1/payment_intents"]

    def lookups(self, payment_intent_id: str) -> list[Seen]:
        return [s for s in self.seen if s.method == "GET" and s.path == f"/v1/payment_intents/{payment_intent_id}"]

    def settle(self, payment_intent_id: str, status: str, *, code: str = "card_declined") -> None:
        """The status GET reports from now on; a failed one carries `last_payment_error` with `code`."""
        intent = self.intents[payment_intent_id]
        intent["status"] = status
        intent["amount_received"] = intent.get("amount", 0) if status == "succeeded" else 0
        intent["last_payment_error"] = None if status == "succeeded" else {
            "type": "card_error", "code": code, "message": f"fake decline: {code}"}

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
        content = self.remember_or_rewrite(request.method, request.url.path, body, answer)
        return Response(content, answer.status_code, media_type=answer.headers.get("content-type"))

    def remember_or_rewrite(self, method: str, path: str, body: bytes, answer: httpx.Response) -> bytes:
        if answer.status_code != 200:
            return answer.content
        if method == "POST" and path == "/v1/payment_intents":
            form = dict(parse_qsl(body.decode()))
            self.intents[answer.json()["id"]] = {
                "amount": int(form["amount"]), "currency": form["currency"], "customer": form.get("customer"),
                "payment_method": form.get("payment_method"), "status": "processing", "amount_received": 0,
                "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
            }
            return answer.content
        found = INTENT_PATH.match(path)
        if method == "GET" and found and found.group(1) in self.intents:
            return json.dumps({**answer.json(), **self.intents[found.group(1)]}).encode()
        return answer.content

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
