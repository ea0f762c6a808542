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

Where a test needs Stripe's failures, which stripe-mock never gives, this fake plays a `script` of actions, one per
POST /v1/payment_intents ("pass" once it runs out): `500` (nothing made), `500_after` (made, then a 500 anyway:
Stripe warns a 500 may have had effects), `timeout` (no answer in time, nothing made), `timeout_after` (made, the
answer lost), `card_declined` and `authentication_required` (a 402 card error; the declined PaymentIntent exists).
As Stripe does, every answer to a POST carrying an Idempotency-Key is saved and replayed, unprocessed, to every
later POST with that key — a saved 500 included —, and a POST whose key is still being answered gets a 409.
stripe-mock keeps nothing, so GET /v1/payment_intents (a list by customer) is answered from `intents` here
(after stripe-mock checked the request), and so is POST /v1/payment_intents/{id}/cancel of a listed
PaymentIntent (refused once it succeeded, as Stripe does).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import deque
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
CANCEL_PATH = re.compile(r"^/v1/payment_intents/(pi_[A-Za-z0-9_]+)/cancel$")
CREATE = "/v1/payment_intents"
CARD_ERRORS = ("card_declined", "authentication_required")


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
    script: deque[str] = field(default_factory=deque)  # what POST /v1/payment_intents does next (see above)
    created_status: str = "processing"  # the status a PaymentIntent made through this front starts in
    hang_seconds: float = 3.0  # how long a `timeout` keeps the client waiting: longer than its timeout
    saved: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # idempotency key → the answer replayed
    in_flight: set[str] = field(default_factory=set)  # keys of requests still being answered

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

    def succeeded_for(self, recharge_id: str) -> list[str]:
        """The PaymentIntents made for this recharge that succeeded."""
        return [i for i, f in self.intents.items()
                if f.get("metadata", {}).get("recharge_id") == recharge_id and f.get("status") == "succeeded"]

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        key = request.headers.get("idempotency-key")
        self.seen.append(Seen(request.method, request.url.path, key, body))
        if request.method == "POST" and key is not None and key in self.saved:
            status, content = self.saved[key]  # Stripe's idempotency: the first answer, whatever it was
            return Response(content, status, media_type="application/json")
        if request.method == "POST" and key is not None and key in self.in_flight:
            error = {"type": "idempotency_error", "message": "fake: a request with this key is still in progress"}
            return JSONResponse({"error": error}, status_code=409)  # as Stripe answers a concurrent retry
        if request.method == "POST" and request.url.path == CREATE:
            action = self.decline or (self.script.popleft() if self.script else "pass")
            self.in_flight.add(key or "")
            try:
                made = await self.create(request, body, action)
            finally:
                self.in_flight.discard(key or "")
            if key is not None and action != "timeout":  # made or refused: Stripe saved the answer
                self.saved[key] = (made.status_code, bytes(made.body))
            return made
        cancel = CANCEL_PATH.match(request.url.path)
        if request.method == "POST" and cancel and cancel.group(1) in self.intents:
            return self.cancel(cancel.group(1))
        answer = await self.forward(request, body)
        content = self.remember_or_rewrite(request.method, request.url.path, body, answer)
        if request.method == "GET" and request.url.path == CREATE and answer.status_code == 200:
            content = self.listed(answer.json(), dict(request.query_params))
        return Response(content, answer.status_code, media_type=answer.headers.get("content-type"))

    async def forward(self, request: Request, body: bytes) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        async with httpx.AsyncClient(base_url=self.upstream, timeout=20) as client:
            return await client.request(
                request.method, request.url.path, params=request.query_params, content=body, headers=headers
            )

    async def create(self, request: Request, body: bytes, action: str) -> Response:
        if action in CARD_ERRORS:
            return self.card_error(action, dict(parse_qsl(body.decode())), self.intents)
        if action == "500":
            return self.server_error()
        if action == "timeout":
            await asyncio.sleep(self.hang_seconds)  # the client gave up long before: nothing was made
            return self.server_error()
        answer = await self.forward(request, body)
        content = self.remember_or_rewrite(request.method, request.url.path, body, answer)
        if action == "500_after":
            return self.server_error()
        if action == "timeout_after":
            await asyncio.sleep(self.hang_seconds)  # made, and the answer never reaches the client in time
        return Response(content, answer.status_code, media_type="application/json")

    def listed(self, page: dict[str, Any], query: dict[str, str]) -> bytes:
        """A customer's PaymentIntents, as Stripe's strongly consistent list gives them (newest first)."""
        shape = page["data"][0] if page.get("data") else {}
        since = int(query.get("created[gte]", "0"))
        ours = [{**shape, "object": "payment_intent", **f, "id": i} for i, f in self.intents.items()
                if f.get("customer") == query.get("customer") and f.get("created", 0) >= since]
        ours.sort(key=lambda f: f.get("created", 0), reverse=True)
        return json.dumps({**page, "data": ours, "has_more": False}).encode()

    def cancel(self, payment_intent_id: str) -> Response:
        intent = self.intents[payment_intent_id]
        if intent["status"] == "succeeded":
            error = {"type": "invalid_request_error", "code": "payment_intent_unexpected_state",
                     "message": "You cannot cancel this PaymentIntent because it has a status of succeeded."}
            return JSONResponse({"error": error}, status_code=400)
        intent["status"] = "canceled"
        return JSONResponse({"object": "payment_intent", **intent, "id": payment_intent_id})

    @staticmethod
    def server_error() -> JSONResponse:
        error = {"type": "api_error", "message": "fake: an error occurred with our connection to Stripe"}
        return JSONResponse({"error": error}, status_code=500)

    def remember_or_rewrite(self, method: str, path: str, body: bytes, answer: httpx.Response) -> bytes:
        if answer.status_code != 200:
            return answer.content
        if method == "POST" and path == "/v1/payment_intents":
            form = dict(parse_qsl(body.decode()))
            self.intents[answer.json()["id"]] = {
                "amount": int(form["amount"]), "currency": form["currency"], "customer": form.get("customer"),
                "payment_method": form.get("payment_method"), "status": self.created_status,
                "amount_received": int(form["amount"]) if self.created_status == "succeeded" else 0,
                "metadata": metadata_of(form), "created": int(time.time()),
            }
            return answer.content
        found = INTENT_PATH.match(path)
        if method == "GET" and found and found.group(1) in self.intents:
            return json.dumps({**answer.json(), **self.intents[found.group(1)]}).encode()
        return answer.content

    @staticmethod
    def card_error(code: str, form: dict[str, str] | None = None,
                   intents: dict[str, dict[str, Any]] | None = None) -> JSONResponse:
        """A 402 card error; given the request's form, the declined PaymentIntent is made (listed) as Stripe
        makes it."""
        intent = {"id": f"pi_fake{secrets.token_hex(8)}", "object": "payment_intent",
                  "status": "requires_payment_method" if code == "card_declined" else "requires_action"}
        if form is not None and intents is not None:
            intents[intent["id"]] = {
                "amount": int(form["amount"]), "currency": form["currency"], "customer": form.get("customer"),
                "payment_method": form.get("payment_method"), "status": intent["status"], "amount_received": 0,
                "metadata": metadata_of(form), "created": int(time.time()),
            }
        error = {
            "type": "card_error", "code": code, "message": f"fake decline: {code}", "payment_intent": intent,
            **({"decline_code": "generic_decline"} if code == "card_declined" else {}),
        }
        return JSONResponse({"error": error}, status_code=402)


def metadata_of(form: dict[str, str]) -> dict[str, str]:
    return {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")}


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
