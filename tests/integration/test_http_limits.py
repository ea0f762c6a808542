"""Bounded request bodies: a body past its route's limit is refused with a 413 before it is read, whether or not
its length is declared, and the server's memory stays bounded while a client keeps sending.

The uploads go over a raw socket to `jobmeter run http` in its own process, as deployed, so what is measured is
what the server really read and held (its VmHWM), not what an in-process client buffered."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from jobmeter.settings import Settings
from services.console.web import MAX_FORM_BYTES
from services.devtools.sandbox import HttpChild, http_child
from services.http import ingest, webhooks
from services.http.app import DEFAULT_MAX_BODY_BYTES
from services.http.limits import BodyLimits, BoundedBodies
from services.stripe_adapter.fixtures import build_event, encode_event
from services.stripe_adapter.webhooks import sign
from tests.integration.helpers import ADMIN, INGEST, job

pytestmark = pytest.mark.integration

MB = 1024 * 1024
HOSTILE_BYTES = 40 * MB
CHUNK = 64 * 1024
INGEST_LIMIT = Settings.model_fields["jobmeter_ingest_max_batch"].default * ingest.MAX_ITEM_BYTES


@dataclass(frozen=True)
class Server:
    child: HttpChild

    @property
    def url(self) -> str:
        return self.child.url

    @property
    def port(self) -> int:
        return int(self.child.url.rpartition(":")[2])

    @property
    def origin(self) -> dict[str, str]:
        return {"Origin": self.url}

    def peak_memory(self) -> int:
        """The process's resident high-water mark (VmHWM), in bytes."""
        for line in Path(f"/proc/{self.child.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/<pid>/status")


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[Server]:
    """`jobmeter run http` as a child process in this test's sandbox, once /healthz answers."""
    async with http_child(settings) as child:
        yield Server(child)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client had sent when the answer arrived or the server closed the connection

    def json(self) -> object:
        return json.loads(self.body)


def request_head(server: Server, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked_upload(server: Server, path: str, headers: dict[str, str], total: int = HOSTILE_BYTES) -> Answer:
    """Send `total` bytes as a chunked body (no Content-Length), CHUNK at a time, and stop as soon as the server
    answers or hangs up, as a browser or curl does."""
    piece = b"%x\r\n" % CHUNK + b"x" * CHUNK + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(request_head(server, path, {**headers, "Transfer-Encoding": "chunked"}))
        sent = 0
        while sent < total:
            answered, _, _ = select.select([sock], [], [], 0)
            if answered:
                break
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += CHUNK
        else:
            sock.sendall(b"0\r\n\r\n")
        return read_answer(sock, sent)


def declared_upload(server: Server, path: str, headers: dict[str, str], length: int) -> Answer:
    """Declare `length` bytes and send none: only the headers can have decided the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(request_head(server, path, {**headers, "Content-Length": str(length)}))
        return read_answer(sock, 0)


def read_answer(sock: socket.socket, sent: int) -> Answer:
    received = b""
    while b"\r\n\r\n" not in received or len(received) < body_end(received):
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        received += data
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict((k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in header_lines))
    return Answer(int(status_line.split()[1]), headers, body, sent)


def body_end(received: bytes) -> int:
    head, _, _ = received.partition(b"\r\n\r\n")
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return len(head) + 4 + int(value)
    return len(received) + 1  # no length: read to the end


def login_form(size: int) -> bytes:
    """A correct login form of exactly `size` bytes (a padding field the login ignores)."""
    form = b"token=dev-admin-token&pad="
    return form + b"x" * (size - len(form))


def padded(body: bytes, size: int) -> bytes:
    """The same JSON, `size` bytes long: trailing whitespace is still the same document."""
    return body + b" " * (size - len(body))


def refused_early(answer: Answer, limit: int) -> None:
    assert answer.status == 413, answer
    assert answer.headers.get("connection") == "close"
    assert answer.json() == {"detail": f"request body over {limit} bytes"}
    # The server answered and stopped reading long before the client was done: it did not read the body to
    # refuse it. (What it read is the limit; the rest of this is socket buffers between the two processes.)
    assert answer.sent < HOSTILE_BYTES // 2, answer.sent


async def test_chunked_uploads_past_the_limit_are_refused_early_with_bounded_memory(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:  # warm every route up before measuring
        assert (await client.post("/webhooks/stripe", content=b"{}")).status_code == 400
        assert (await client.post("/v1/jobs/completed", content=b"[]", headers=INGEST)).status_code == 422
        assert (await client.post("/console/login", data={"token": "x"}, headers=server.origin)).status_code == 401
    before = server.peak_memory()

    webhook = chunked_upload(server, "/webhooks/stripe", {"Content-Type": "application/json"})
    refused_early(webhook, webhooks.MAX_BODY_BYTES)
    login = chunked_upload(server, "/console/login",
                           {**server.origin, "Content-Type": "application/x-www-form-urlencoded"})
    refused_early(login, MAX_FORM_BYTES)
    batch = chunked_upload(server, "/v1/jobs/completed", {**INGEST, "Content-Type": "application/json"})
    refused_early(batch, INGEST_LIMIT)
    other = chunked_upload(server, "/v1/accounts", {**ADMIN, "Content-Type": "application/json"})
    refused_early(other, DEFAULT_MAX_BODY_BYTES)

    grown = server.peak_memory() - before
    assert grown < 16 * MB, f"the server's peak memory grew by {grown / MB:.1f} MB for {HOSTILE_BYTES / MB} MB sent"


async def test_a_declared_length_over_the_limit_is_refused_from_the_headers(server: Server) -> None:
    cases = [
        ("/webhooks/stripe", {}, webhooks.MAX_BODY_BYTES),
        ("/console/login", server.origin, MAX_FORM_BYTES),
        ("/v1/jobs/completed", INGEST, INGEST_LIMIT),
        ("/v1/jobs/completed", {}, INGEST_LIMIT),  # before the token is looked at: nothing to read, nothing to do
        ("/v1/accounts", ADMIN, DEFAULT_MAX_BODY_BYTES),
    ]
    for path, headers, limit in cases:
        answer = declared_upload(server, path, {**headers, "Content-Type": "application/json"}, limit + 1)
        assert (answer.status, answer.headers.get("connection")) == (413, "close"), (path, answer)
        assert answer.json() == {"detail": f"request body over {limit} bytes"}


async def test_bodies_up_to_each_limit_work_as_before(server: Server, settings: Settings) -> None:
    secret = settings.stripe_webhook_secret.get_secret_value()
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        event = padded(encode_event(build_event("invoice.paid", "cus_NOBODY")), webhooks.MAX_BODY_BYTES)
        signature = {"Stripe-Signature": sign(event, secret)}
        delivered = await client.post("/webhooks/stripe", content=event, headers=signature)
        assert delivered.status_code == 200, delivered.text
        again = await client.post("/webhooks/stripe", content=chunks(event), headers=signature)
        assert (again.status_code, again.json()["duplicate"]) == (200, True), again.text

        batch = padded(json.dumps([job("acme", "limit-1")]).encode(), INGEST_LIMIT)
        accepted = await client.post("/v1/jobs/completed", content=batch, headers=INGEST)
        assert (accepted.status_code, accepted.json()["accepted"]) == (202, 1), accepted.text
        streamed = await client.post("/v1/jobs/completed", content=chunks(batch), headers=INGEST)
        assert (streamed.status_code, streamed.json()["duplicates"]) == (202, 1), streamed.text
        over = await client.post("/v1/jobs/completed", content=chunks(batch + b" "), headers=INGEST)
        assert over.status_code == 413

        form = {**server.origin, "Content-Type": "application/x-www-form-urlencoded"}
        logged_in = await client.post("/console/login", content=chunks(login_form(MAX_FORM_BYTES)), headers=form)
        assert (logged_in.status_code, logged_in.headers["location"]) == (303, "/console/accounts")
        too_long = await client.post("/console/login", content=chunks(login_form(MAX_FORM_BYTES + 1)), headers=form)
        assert too_long.status_code == 413

        account = {"account_id": "limits", "model": "subscription", "display_name": ""}
        body = padded(json.dumps(account).encode(), DEFAULT_MAX_BODY_BYTES)
        json_headers = {**ADMIN, "Content-Type": "application/json"}
        created = await client.post("/v1/accounts", content=chunks(body), headers=json_headers)
        assert created.status_code in (201, 202), created.text
        refused = await client.post("/v1/accounts", content=chunks(body + b" "), headers=json_headers)
        assert refused.status_code == 413


async def chunks(body: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    """The body as a generator: httpx sends it chunked, with no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


# -- the middleware alone, in memory -----------------------------------------------------------------------------

class Thing(BaseModel):
    name: str


def limited_app() -> tuple[FastAPI, list[str]]:
    app = FastAPI()
    reached: list[str] = []

    @app.post("/raw")
    async def raw(request: Request) -> JSONResponse:
        reached.append("raw")
        return JSONResponse({"bytes": len(await request.body())})

    @app.post("/model")
    async def model(thing: Thing) -> JSONResponse:  # FastAPI reads and parses the body itself
        return JSONResponse({"name": thing.name})

    @app.post("/swallow")
    async def swallow(request: Request) -> JSONResponse:
        try:
            await request.body()
        except Exception:  # a handler that turns every failure into its own answer
            return JSONResponse({"detail": "something else"}, status_code=400)
        return JSONResponse({})

    app.add_middleware(BoundedBodies, limits=BodyLimits(default=100, paths={"/raw": 1000}))
    return app, reached


def test_limits_by_path_and_prefix() -> None:
    limits = BodyLimits(default=1, paths={"/a": 2}, prefixes={"/c": 3, "/console": 4})
    assert [limits.of(p) for p in ("/a", "/a/b", "/b", "/c", "/console/login", "/console")] == [2, 1, 1, 3, 4, 4]


async def test_the_middleware_stops_reading_at_the_limit() -> None:
    app, reached = limited_app()
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"x" * 100

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://limits.test") as client:
        assert (await client.post("/raw", content=b"x" * 1000)).json() == {"bytes": 1000}
        stopped = await client.post("/raw", content=endless())
        assert (stopped.status_code, stopped.json()) == (413, {"detail": "request body over 1000 bytes"})
        assert pulled == 11  # the eleventh chunk passed the limit, and nothing was asked for after it

        declared = await client.post("/raw", content=b"x" * 1001)
        assert declared.status_code == 413
        assert reached == ["raw", "raw"]  # the declared length was refused before the route ran

        assert (await client.post("/model", json={"name": "n"})).status_code == 200
        parsed = await client.post("/model", content=chunks(b"x" * 150, 50))
        assert (parsed.status_code, parsed.json()["detail"]) == (413, "request body over 100 bytes")
        swallowed = await client.post("/swallow", content=chunks(b"x" * 150, 50))
        assert (swallowed.status_code, swallowed.json()["detail"]) == (413, "request body over 100 bytes")
