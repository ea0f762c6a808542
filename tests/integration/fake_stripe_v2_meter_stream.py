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

Answer = tuple[int, dict[str, Any]]  # an HTTP status and its JSON body


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

    def answer(self, path: str, bearer: str, body: bytes, idempotency_key: str | None) -> Answer:
        """What Stripe would answer this POST: the status and its JSON body."""
        if path == "/v2/billing/meter_event_session":
            return self._session(bearer)
        if path == "/v2/billing/meter_event_stream":
            return self._stream(bearer, json.loads(body or b"{}"), idempotency_key)
        return _error(404, "invalid_request_error", f"the fake has no {path}")

    def _session(self, key: str) -> Answer:
        if not key.startswith("sk_test_"):
            return _error(401, "invalid_request_error", "a secret key is needed")
        token = "mes_" + secrets.token_hex(12)
        expires = datetime.now(UTC) + timedelta(minutes=self.session_minutes)
        with self._lock:
            self.sessions[token] = expires
        return 200, {"id": "mes_session_" + token[4:], "object": "v2.billing.meter_event_session",
                     "authentication_token": token, "created": datetime.now(UTC).isoformat(),
                     "expires_at": expires.isoformat().replace("+00:00", "Z"), "livemode": False}

    def _stream(self, token: str, body: dict[str, Any], idempotency_key: str | None) -> Answer:
        with self._lock:
            expires = self.sessions.get(token)
            action = self.script.popleft() if self.script else "pass"
        if expires is None or expires <= datetime.now(UTC):
            return _error(401, "temporary_session_expired", "the meter event session has expired")
        if action == "429":
            return _error(429, "rate_limit", "fake: too many requests")
        events = body.get("events") or []
        if not 1 <= len(events) <= 100:
            return _error(400, "invalid_request_error", "between 1 and 100 events a request")
        with self._lock:
            self.requests.append(events)
            self.keys.append(idempotency_key)
            for event in events:
                self.counted.setdefault(event["identifier"], event)
        return 200, {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keeps test output quiet
                return None

            def do_POST(self) -> None:  # the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
                status, payload = fake.answer(self.path, bearer, body, self.headers.get("Idempotency-Key"))
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler


def _error(status: int, kind: str, message: str) -> Answer:
    return status, {"error": {"type": kind, "code": kind, "message": message}}
