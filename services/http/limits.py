"""Bounded request bodies on every route, whether or not the client declares a Content-Length.

One pure-ASGI middleware in front of the app: a declared length over the route's limit is answered 413 before
anything reads the body; otherwise the bytes are counted as the app reads them, and the read that passes the
limit fails, so nothing past it is ever held in memory (chunked uploads included). The 413 closes the
connection: the server does not go on reading, or discarding, the rest of a body it has refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class BodyLimits:
    """Bytes a request body may hold: by exact path, else by the longest matching path prefix, else `default`."""

    default: int
    paths: Mapping[str, int] = field(default_factory=dict)
    prefixes: Mapping[str, int] = field(default_factory=dict)

    def of(self, path: str) -> int:
        if path in self.paths:
            return self.paths[path]
        matching = [prefix for prefix in self.prefixes if path.startswith(prefix)]
        return self.prefixes[max(matching, key=len)] if matching else self.default


class BodyTooLarge(HTTPException):
    # An HTTPException, so the handlers that re-raise those (FastAPI's body parsing, the console's route wrapper)
    # let it through rather than turning it into a 400 or an error page.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


def too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413,
                        headers={"Connection": "close"})


def declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    return int(value) if value is not None and value.isdigit() else None


class BoundedBodies:
    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.of(scope["path"])
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await too_large(limit)(scope, receive, send)
        else:
            await CountedBody(limit, receive, send).run(self.app, scope)


class CountedBody:
    """One request: its body counted as the app reads it, and its answer a 413 once the count passed the limit."""

    def __init__(self, limit: int, receive: Receive, send: Send) -> None:
        self.limit = limit
        self._receive = receive
        self._send = send
        self.received = 0
        self.passed = False
        self.started = False

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        try:
            await app(scope, self.receive, self.send)
        except BodyTooLarge:
            pass  # only self.receive raises it, once the limit is passed: answered just below
        if self.passed and not self.started:
            await too_large(self.limit)(scope, self._receive, self._send)
        # If the response had started, it stops here unfinished, and the server drops the connection.

    async def receive(self) -> Message:
        if self.passed:
            raise BodyTooLarge(self.limit)
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.passed = True
                raise BodyTooLarge(self.limit)
        return message

    async def send(self, message: Message) -> None:
        if self.passed and not self.started:
            return  # whatever the app made of the stopped body, the answer is the 413 of `run`
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
