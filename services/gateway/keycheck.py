"""Drop-in key check for upstream APIs: an ASGI middleware that asks jobmeter whether a bearer key may pass.

    app.add_middleware(KeyCheckMiddleware, check_url="https://billing.example.com/v1/keys/check")

A request with a working key reaches the app with the answer in `request.state.jobmeter_key`
(`{account_id, key_id, state, billing_model}`); otherwise jobmeter's 401/403 goes back as it came, and its 429
(a hard usage cap reached) with `Retry-After`: the seconds to the cap's period end. Answers
are cached for `ttl_seconds` (1 s by default, so a suspension takes effect within about a second); when
jobmeter cannot be reached the request is refused with 503 (fail closed: no key check, no free usage).

Give `api_of` (`api_of=api_from_path(["extract", ...])` for routes under `/v1/<api>`) and the check names the API
surface each request is for, so a cap on one surface stops only that one; without it every hold stops every call.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

import httpx

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CACHEABLE = (200, 401, 403, 429)
ApiOf = Callable[[Scope], str | None]


def api_from_path(apis: Collection[str], prefix: str = "/v1/") -> ApiOf:
    """The surface of a request whose path is `<prefix><api>` or under it (`/v1/extract`, `/v1/extract/jobs/7`);
    None for any other path."""
    known = frozenset(apis)

    def api_of(scope: Scope) -> str | None:
        path: str = scope["path"]
        if not path.startswith(prefix):
            return None
        name = path[len(prefix):].partition("/")[0]
        return name if name in known else None

    return api_of


class KeyCheckMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        check_url: str,
        ttl_seconds: float = 1.0,
        timeout_seconds: float = 2.0,
        exempt_paths: Collection[str] = ("/healthz",),
        max_cached: int = 10_000,
        transport: httpx.AsyncBaseTransport | None = None,
        api_of: ApiOf | None = None,
    ) -> None:
        self.app = app
        self.check_url = check_url
        self.api_of = api_of
        self.ttl = ttl_seconds
        self.exempt = frozenset(exempt_paths)
        self.max_cached = max_cached
        self._client = httpx.AsyncClient(timeout=timeout_seconds, transport=transport)
        # sha256(key)[/api] -> (expires at, status, body): the key itself is never kept
        self._cache: dict[str, tuple[float, int, dict[str, Any]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        key = _bearer(scope)
        if key is None:
            await _respond(send, 401, {"detail": "missing API key (Authorization: Bearer …)"})
            return
        status, body = await self.check(key, self.api_of(scope) if self.api_of else None)
        if status != 200:
            await _respond(send, status, body)
            return
        scope.setdefault("state", {})["jobmeter_key"] = body
        await self.app(scope, receive, send)

    async def check(self, key: str, api: str | None = None) -> tuple[int, dict[str, Any]]:
        """jobmeter's answer for the key on a call to `api` (None: unnamed, so any hold refuses it)."""
        digest = hashlib.sha256(key.encode()).hexdigest() + ("/" + api if api else "")
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        try:
            response = await self._client.get(self.check_url, headers={"Authorization": f"Bearer {key}"},
                                              params={"api": api} if api else None)
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return 503, {"detail": "the key check is unavailable"}
        if response.status_code not in CACHEABLE:
            return 503, {"detail": "the key check is unavailable"}
        if len(self._cache) >= self.max_cached:
            self._cache = {d: v for d, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= self.max_cached:
                self._cache.clear()
        self._cache[digest] = (now + self.ttl, response.status_code, body)
        return response.status_code, body

    async def aclose(self) -> None:
        await self._client.aclose()


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return (token.strip() or None) if scheme.lower() == "bearer" else None
    return None


async def _respond(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if status == 429 and isinstance(body.get("retry_after"), int):
        headers.append((b"retry-after", str(body["retry_after"]).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
