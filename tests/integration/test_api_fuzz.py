"""The whole HTTP API fuzzed from its own OpenAPI document (schemathesis), against the real app on a real port.

What it shows:
- with valid credentials (the admin token; the ingest token for ingest), no operation answers 5xx, and every
  answer's status code, content type and body are ones the document declares for that operation;
- without credentials, every operation that is not public on purpose (`test_security.PUBLIC`) answers 401 or 403,
  whatever the generated input.

How it runs:
- The document is the app's own, `create_app(...).openapi()`, taken at import: schemathesis's pytest integration
  makes one test per operation at collection time, before any server runs. (Its lazy loader,
  `schemathesis.pytest.from_fixture`, would read the served document at run time, but schemathesis 4.32.5's lazy
  tests read `Function._nodeid`, which pytest 9.2 no longer has.) `test_the_fuzzed_document_is_the_served_one`
  checks that the running app serves exactly that document at /openapi.json. (On pytest 9.2 the per-operation
  tests also share one node id, the function's name: a failure names its operation in the request it reports.)
- The generated cases are sent synchronously, with `requests`, from the test's thread, while the app is asyncio:
  so the app runs in uvicorn in a thread of its own with its own event loop (`served_in_thread`), and the tests
  talk to it over the socket like any client. One server (and one sandbox: its own database and topics) serves
  the whole module, so what one operation creates, later ones may find.
- Fast and reproducible: a fixed seed and derandomized generation, a few dozen examples an operation, no
  shrinking (a failure is reported as found, with a curl command to reproduce it), no stateful phase.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import pytest
import requests
import schemathesis
from fastapi import FastAPI
from schemathesis import Case

from jobmeter.settings import Settings
from services.http.app import create_app
from services.platform.serving import serving
from tests.integration.helpers import ADMIN, INGEST, stack_sandbox
from tests.integration.test_security import PUBLIC

pytestmark = [
    pytest.mark.integration,
    # Raised by schemathesis's own strategies, about their use of `random`: nothing this project can act on.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

# The consumers whose tables the API reads: with them folding, a registration is answered 201 at once (not 202
# after a wait), and later operations can find what earlier ones created.
CONSUMERS = ["accounts", "keys", "payg", "subscriptions"]

# Only the routes matter to the document, not where the settings point.
DOCUMENT: dict[str, Any] = create_app(Settings()).openapi()


def fuzz_config(*, max_examples: int, checks: dict[str, Any]) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": 14,
        "generation": {"max-examples": max_examples, "deterministic": True, "no-shrink": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "checks": checks,
    })


# With credentials: the conformance checks, which hold for any input. (The data-acceptance checks are left out:
# whether a well-formed request succeeds depends on state — an unknown account is a 404 — not on the schema.)
documented = schemathesis.openapi.from_dict(DOCUMENT, config=fuzz_config(max_examples=25, checks={
    "enabled": False,
    "not_a_server_error": {"enabled": True},
    "status_code_conformance": {"enabled": True},
    "content_type_conformance": {"enabled": True},
    "response_schema_conformance": {"enabled": True},
}))
# Without: only the refusal, which the test asserts itself.
guarded = schemathesis.openapi.from_dict(
    DOCUMENT, config=fuzz_config(max_examples=5, checks={"enabled": False})
).exclude(path=sorted(PUBLIC))


@contextmanager
def served_in_thread(app: FastAPI) -> Iterator[str]:
    """Serve `app` on a real port from a thread running its own event loop; yields the base URL once it accepts
    connections, and stops it (lifespan included) on the way out."""
    started: Future[tuple[asyncio.AbstractEventLoop, asyncio.Event, str]] = Future()

    async def serve() -> None:
        stop = asyncio.Event()
        try:
            async with serving(app) as base:
                started.set_result((asyncio.get_running_loop(), stop, base))
                await stop.wait()
        except BaseException as error:
            if not started.done():
                started.set_exception(error)  # why it could not start, raised in the test's thread below
            raise

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="fuzzed-app", daemon=True)
    thread.start()
    loop, stop, base = started.result(timeout=120)
    try:
        yield base
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=60)


@pytest.fixture(scope="module")
async def sandbox(stack: dict[str, str]) -> AsyncIterator[Settings]:
    """conftest's `settings`, for the whole module."""
    async with stack_sandbox(stack) as settings:
        yield settings


@pytest.fixture(scope="module")
def served(sandbox: Settings) -> Iterator[str]:
    with served_in_thread(create_app(sandbox, consumers=CONSUMERS)) as base:
        yield base


def credentials(case: Case[Any]) -> dict[str, str]:
    """The token an operation takes: none for the public ones (the key check's credential is the API key it
    checks, which the fuzz does not have), the ingest token for ingest, the admin token for the rest."""
    if case.operation.path in PUBLIC:
        return {}
    if "ingest" in (case.operation.tags or []):
        return INGEST
    return ADMIN


def test_the_fuzzed_document_is_the_served_one(served: str) -> None:
    assert requests.get(f"{served}/openapi.json", timeout=10).json() == DOCUMENT


@documented.parametrize()
def test_every_operation_answers_as_documented(case: Case[Any], served: str) -> None:
    case.call_and_validate(base_url=served, headers=credentials(case))


@guarded.parametrize()
def test_every_non_public_operation_refuses_without_credentials(case: Case[Any], served: str) -> None:
    response = case.call(base_url=served)
    refusals: tuple[int, ...] = (401, 403)
    if case.method.upper() != case.operation.method.upper():
        # A method the path does not serve (the coverage phase tries them) reaches no route at all: 405 says only that.
        refusals = (401, 403, 405)
    assert response.status_code in refusals, (case.as_curl_command(), response.status_code, response.text[:300])
