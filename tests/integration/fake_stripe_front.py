"""FakeStripeFront: a small local HTTP server in front of stripe-mock that counts what reached it and, on cue,
answers like a struggling Stripe would (429, 500, or too slow), which stripe-mock itself never does.

Every request is recorded (method, path, form, Idempotency-Key, and what the fake did with it); requests not
played otherwise are forwarded to the real stripe-mock. It runs in a thread, so it works as a plain `with`.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qsl, urlsplit

FORWARDED_HEADERS = ("Authorization", "Idempotency-Key", "Stripe-Version", "Content-Type", "User-Agent")
ERRORS = {
    "429": (429, {"type": "invalid_request_error", "code": "rate_limit", "message": "fake: too many requests"}),
    "500": (500, {"type": "api_error", "message": "fake: internal error"}),
}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    form: dict[str, str]
    idempotency_key: str | None
    action: str  # "pass" (forwarded), "429", "500", or "slow" (forwarded after `slow_seconds`)


class FakeStripeFront:
    def __init__(self, upstream: str, *, slow_seconds: float = 2.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.slow_seconds = slow_seconds
        self.seen: list[Seen] = []
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeStripeFront:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def play(self, actions: list[str]) -> None:
        """The next requests get these answers, in order; after them, requests pass."""
        with self._lock:
            self._script.extend(actions)

    def meter_events(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path == "/v1/billing/meter_events"]

    def _next_action(self) -> str:
        with self._lock:
            return self._script.popleft() if self._script else "pass"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 — quiet
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                action = front._next_action()
                with front._lock:
                    front.seen.append(Seen(self.command, path, dict(parse_qsl(body.decode())),
                                           self.headers.get("Idempotency-Key"), action))
                if action in ERRORS:
                    status, error = ERRORS[action]
                    self._reply(status, json.dumps({"error": error}).encode(), "application/json")
                    return
                if action == "slow":
                    time.sleep(front.slow_seconds)
                headers = {h: v for h in FORWARDED_HEADERS if (v := self.headers.get(h)) is not None}
                request = urllib.request.Request(  # noqa: S310 — the local stripe-mock, http only
                    front.upstream + self.path, data=body or None, headers=headers, method=self.command
                )
                try:
                    with urllib.request.urlopen(request, timeout=20) as answer:  # noqa: S310 — local stripe-mock
                        self._reply(answer.status, answer.read(), answer.headers.get("Content-Type"))
                except urllib.error.HTTPError as answer:
                    self._reply(answer.code, answer.read(), answer.headers.get("Content-Type"))
                except (BrokenPipeError, ConnectionResetError):
                    return

            def _reply(self, status: int, body: bytes, content_type: str | None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type or "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout it asked for)

            do_GET = do_POST = do_DELETE = _serve

        return Handler
