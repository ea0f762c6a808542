"""A FAKE: a tiny local HTTP front in front of stripe-mock that, on command, makes Stripe fail for a while.

For the chaos run (and its tests). Every request is passed through to stripe-mock, except during a fault stretch
started with `fail(mode, seconds)`:
- "500": answered here with a 500 and Stripe's error body (`{"error": {"type": "api_error", ...}}`), nothing made;
- "stall": held past the client's timeout (`stall_seconds`), then closed with a 500 nobody reads; nothing made.
  (stripe-mock keeps no state, so a request "made, answer lost" could not be found by a lookup here: the PAYG
  fake front and the recharger's property test cover that case.)
As Stripe does, a 500 is saved under the request's Idempotency-Key and replayed, unprocessed, to every later
request with that key, also after the stretch (Stripe keeps it 24 hours): a client retrying under the same key
never gets past it. `IdempotencyMemory` is that rule alone, for any fake front.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Mode = Literal["500", "stall"]
FORWARDED_HEADERS = ("authorization", "idempotency-key", "stripe-version", "content-type", "user-agent")


def stripe_error(status: int, message: str, kind: str = "api_error") -> tuple[int, bytes]:
    """An error answer in Stripe's shape."""
    return status, json.dumps({"error": {"type": kind, "message": message}}).encode()


@dataclass
class IdempotencyMemory:
    """Stripe's idempotency for 500s: the first 500 answered to a key is what every later request with that key
    gets, whatever would happen to it now."""

    saved: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    replayed: int = 0

    def replay(self, key: str | None) -> tuple[int, bytes] | None:
        found = self.saved.get(key) if key else None
        if found is not None:
            self.replayed += 1
        return found

    def save(self, key: str | None, answer: tuple[int, bytes]) -> None:
        if key and answer[0] >= 500:
            self.saved.setdefault(key, answer)


@dataclass
class StripeFaults:
    upstream: str
    stall_seconds: float = 5.0  # longer than the clients' timeout (the chaos run sets theirs to 3 s)
    url: str = ""
    stretches: list[tuple[Mode, float]] = field(default_factory=list)  # (mode, time.monotonic() it ends), in turn
    memory: IdempotencyMemory = field(default_factory=IdempotencyMemory)
    counts: dict[str, int] = field(default_factory=lambda: {"passed": 0, "500": 0, "stall": 0})
    seen: list[tuple[str, str, str | None, str]] = field(default_factory=list)  # (method, path, key, what happened)
    _client: httpx.AsyncClient | None = None

    def fail(self, mode: Mode, seconds: float) -> float:
        """For `seconds`, answer every request as `mode` says, from now or from the end of the stretches already
        planned (stretches never overlap: one outage's length is what it says); returns when it ends
        (time.monotonic())."""
        self.failing()
        start = self.stretches[-1][1] if self.stretches else time.monotonic()
        self.stretches.append((mode, start + seconds))
        return start + seconds

    def fail_in_turn(self, stretches: list[tuple[Mode, float]]) -> None:
        """From now on, one stretch after the other (e.g. 500s for 15 s, then stalls for 15 s)."""
        ends, at = [], time.monotonic()
        for mode, seconds in stretches:
            at += seconds
            ends.append((mode, at))
        self.stretches = ends

    def failing(self) -> Mode | None:
        now = time.monotonic()
        while self.stretches and self.stretches[0][1] <= now:
            self.stretches.pop(0)
        return self.stretches[0][0] if self.stretches else None

    def figures(self) -> dict[str, int]:
        return {**self.counts, "replayed_500": self.memory.replayed}

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        key = request.headers.get("idempotency-key")
        saved = self.memory.replay(key)
        mode = self.failing()
        self.seen.append((request.method, request.url.path, key,
                          "replayed" if saved is not None else mode or "passed"))
        if saved is not None:
            return self._answer(saved, replayed=True)
        if mode is None:
            self.counts["passed"] += 1
            return await self._forward(request, body)
        self.counts[mode] += 1
        if mode == "stall":
            await asyncio.sleep(self.stall_seconds)
        answer = stripe_error(500, f"fake {mode}: an error occurred with our connection to Stripe")
        self.memory.save(key, answer)
        return self._answer(answer)

    async def _forward(self, request: Request, body: bytes) -> Response:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.upstream, timeout=20, trust_env=False)
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        try:
            answer = await self._client.request(request.method, request.url.path, params=request.query_params,
                                                content=body, headers=headers)
        except httpx.TransportError:
            # stripe-mock itself is down (another fault): what a client sees of Stripe then is a gateway error.
            return self._answer(stripe_error(502, "fake: stripe-mock did not answer"))
        return Response(answer.content, answer.status_code, media_type=answer.headers.get("content-type"))

    @staticmethod
    def _answer(answer: tuple[int, bytes], *, replayed: bool = False) -> Response:
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return Response(answer[1], answer[0], media_type="application/json", headers=headers)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


@asynccontextmanager
async def stripe_faults(upstream: str, *, port: int = 0, stall_seconds: float = 5.0) -> AsyncIterator[StripeFaults]:
    """The front, served by uvicorn on 127.0.0.1 (`port` 0: any free one), for the block's duration."""
    front = StripeFaults(upstream.rstrip("/"), stall_seconds=stall_seconds)
    app = Starlette(routes=[Route("/{path:path}", front.handle, methods=["GET", "POST", "DELETE"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # uvicorn only exposes a flag
        if task.done():
            await task  # it failed to start: raise why
        await asyncio.sleep(0.02)
    front.url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        yield front
    finally:
        server.should_exit = True
        await task
        await front.close()
