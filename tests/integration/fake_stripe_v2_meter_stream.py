"""A FAKE of Stripe's v2 meter event endpoints, which stripe-mock does not have — these two alone:

- POST /v2/billing/meter_event_session (secret key): a session token and its expiry;
- POST /v2/billing/meter_event_stream (session token as bearer): up to 100 events, recorded; a token that is
  unknown or expired gets `temporary_session_expired`, as Stripe answers.

`expire_all()` ends every session (to test renewal); `play(["429", ...])` answers the next stream requests with
that status. Events are recorded as received, and deduplicated by identifier as Stripe does, so a test can see
both what was sent and what Stripe would have counted.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.integration.scripted_server import ScriptedServer


class FakeStripeV2MeterStream(ScriptedServer):
    def __init__(self, *, session_minutes: float = 15) -> None:
        self.session_minutes = session_minutes
        self.sessions: dict[str, datetime] = {}
        self.requests: list[list[dict[str, Any]]] = []  # each stream request's events, as received
        self.counted: dict[str, dict[str, Any]] = {}  # identifier -> event, first one wins (Stripe's dedupe)
        self.keys: list[str | None] = []
        super().__init__()

    def expire_all(self) -> None:
        with self._lock:
            self.sessions = {token: datetime.now(UTC) - timedelta(seconds=1) for token in self.sessions}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — keep test output quiet
                return None

            def do_POST(self) -> None:  # noqa: N802 — the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if self.path == "/v2/billing/meter_event_session":
                    self._session(token)
                elif self.path == "/v2/billing/meter_event_stream":
                    self._stream(token, json.loads(body or b"{}"))
                else:
                    self._error(404, "invalid_request_error", f"the fake has no {self.path}")

            def _session(self, key: str) -> None:
                if not key.startswith("sk_test_"):
                    self._error(401, "invalid_request_error", "a secret key is needed")
                    return
                token = "mes_" + secrets.token_hex(12)
                expires = datetime.now(UTC) + timedelta(minutes=fake.session_minutes)
                with fake._lock:
                    fake.sessions[token] = expires
                self._answer(200, {"id": "mes_session_" + token[4:], "object": "v2.billing.meter_event_session",
                                   "authentication_token": token, "created": datetime.now(UTC).isoformat(),
                                   "expires_at": expires.isoformat().replace("+00:00", "Z"), "livemode": False})

            def _stream(self, token: str, body: dict[str, Any]) -> None:
                with fake._lock:
                    expires = fake.sessions.get(token)
                    action = fake.script.popleft() if fake.script else "pass"
                if expires is None or expires <= datetime.now(UTC):
                    self._error(401, "temporary_session_expired", "the meter event session has expired")
                    return
                if action == "429":
                    self._error(429, "rate_limit", "fake: too many requests")
                    return
                events = body.get("events") or []
                if not 1 <= len(events) <= 100:
                    self._error(400, "invalid_request_error", "between 1 and 100 events a request")
                    return
                with fake._lock:
                    fake.requests.append(events)
                    fake.keys.append(self.headers.get("Idempotency-Key"))
                    for event in events:
                        fake.counted.setdefault(event["identifier"], event)
                self._answer(200, {})

            def _error(self, status: int, kind: str, message: str) -> None:
                self._answer(status, {"error": {"type": kind, "code": kind, "message": message}})

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler
