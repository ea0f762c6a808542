"""A FAKE: a tiny local HTTP server in front of stripe-mock that records every request and, on cue, misbehaves.

For the meter reporter's tests. stripe-mock is stateless and always answers 200, so it can neither count what
reached it nor answer 429 or time out. This front does both: it records each request (path, Idempotency-Key,
form body) and plays a script of actions, one per request, passing the rest through to the real stripe-mock:
- "pass": forward to stripe-mock and return its answer;
- "429" / "500": answer that status with a Stripe-shaped error, without forwarding;
- "slow": forward (Stripe got it) but answer only after `slow_seconds`, i.e. after the client gave up.
It also answers `GET /v2/core/events/{id}` (stripe-mock has no /v2) from `v2_events`, 404 for an id it lacks, as
Stripe answers an event destination's receiver fetching a thin event's body.
As Stripe does, a 500 is saved under the request's Idempotency-Key and replayed to every later request with that
key (action "replayed"), whatever the script says: a client retrying under the same key never gets past it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl

import httpx

from tests.integration.scripted_server import ScriptedServer


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    idempotency_key: str | None
    form: dict[str, str]
    action: str


class FakeMeterStripeFront(ScriptedServer):
    def __init__(self, upstream: str, *, slow_seconds: float = 2.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.slow_seconds = slow_seconds
        self.seen: list[SeenRequest] = []
        self.saved_errors: dict[str, bytes] = {}
        self.v2_events: dict[str, dict[str, Any]] = {}
        super().__init__()

    def meter_events(self) -> list[SeenRequest]:
        return [r for r in self.seen if r.path == "/v1/billing/meter_events"]

    def decide(self, key: str | None) -> tuple[str, tuple[int, bytes] | None]:
        """The action for a request and, unless it passes through, the error to answer: a 500 saved under its
        key is replayed, as Stripe does; a scripted 500 is saved under the key."""
        with self._lock:
            saved = self.saved_errors.get(key) if key else None
        if saved is not None:
            return "replayed", (500, saved)
        action = self._next_action()
        if action not in ("429", "500"):
            return action, None
        error = {"error": {"type": "api_error", "message": f"fake {action}"}}
        if action == "429":
            error = {"error": {"type": "invalid_request_error", "code": "rate_limit",
                               "message": "fake: too many requests"}}
        body = json.dumps(error).encode()
        if action == "500" and key:
            with self._lock:
                self.saved_errors[key] = body
        return action, (int(action), body)

    def v2_event(self, event_id: str) -> tuple[int, bytes]:
        found = self.v2_events.get(event_id)
        if found is None:
            missing = {"type": "invalid_request_error", "code": "resource_missing", "message": "fake: no such event"}
            return 404, json.dumps({"error": missing}).encode()
        return 200, json.dumps(found).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keeps test output quiet
                return None

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "GET" and self.path.startswith("/v2/core/events/"):
                    self._answer(*front.v2_event(self.path.removeprefix("/v2/core/events/")))
                    return
                key = self.headers.get("Idempotency-Key")
                action, error = front.decide(key)
                with front._lock:
                    front.seen.append(SeenRequest(
                        self.command, self.path.split("?")[0], key, dict(parse_qsl(body.decode())), action,
                    ))
                if error is not None:
                    self._answer(*error)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = httpx.request(self.command, front.upstream + self.path, headers=headers, content=body)
                if action == "slow":
                    time.sleep(front.slow_seconds)
                try:
                    self._answer(answer.status_code, answer.content)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left, as intended

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _handle

        return Handler
