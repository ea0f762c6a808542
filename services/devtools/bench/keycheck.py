"""`jobmeter bench keys`: how fast the key check answers, and how long a suspension takes to reach it.

On the real stack, in a sandbox of its own (services.devtools.sandbox), each beside its figure with usage caps
in force:
- the check in process (the index lookup alone), p50/p99 over many random keys; again with a fifth of the
  accounts held by a cap (those keys answer "capped" with their Retry-After); again with those caps on one API
  surface and every check naming a surface (`?api=`), half of them the capped one;
- the check over HTTP (uvicorn on a local port, one keep-alive client), p50/p99; again for a capped key (429);
- suspension → check: from the signed `invoice.payment_failed` being accepted to the check answering 403
  (and `invoice.paid` to 200 again), measured by polling the process's own index every millisecond;
- cap → check: from the ingest accepting the job that reaches a hard cap to the check answering "capped" (and
  from raising the cap to "active" again), the same way.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import time
from typing import Annotated, Any

import httpx
import typer

from events.keys import KeyIssued, KeySuspended
from jobmeter.settings import Settings, get_settings
from services.devtools.sandbox import sandbox
from services.http.app import create_app
from services.keys.commands import key_hash, new_secret
from services.keys.index import KeyIndex
from services.platform.serving import serving
from services.stripe_adapter.fixtures import build_event, encode_event
from services.stripe_adapter.webhooks import sign

ADMIN_HEADER = "Authorization"


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": cut[49], "p99": cut[98], "max": ordered[-1], "n": len(ordered)}


def bench_index(keys: int = 10_000, lookups: int = 100_000, *, capped: bool = False,
                scoped: bool = False) -> dict[str, float]:
    """The in-process check: microseconds per lookup, over an index of `keys` keys; `capped`: with every fifth
    account held by a usage cap; `scoped`: those caps on one surface, and each check naming a surface."""
    from datetime import UTC, datetime, timedelta

    index = KeyIndex(ready=True)
    secrets_ = [new_secret() for _ in range(keys)]
    now = datetime.now(UTC)
    for n, secret in enumerate(secrets_):
        index.apply(KeyIssued(account_id=f"acct-{n % 500}", key_id=f"key_{n:x}", prefix=secret[:12],
                              key_hash=key_hash(secret), issued_at=now))
    for n in range(0, 500, 5) if capped else ():
        index.apply(KeySuspended(account_id=f"acct-{n}", source="cap", reason="hard cap reached: 5 jobs this period",
                                 cause="cap:1", effective_at=now, sequence=1, until=now + timedelta(days=3),
                                 scope=["extract"] if scoped else None))
    apis = ("extract", "classify") if scoped else (None, None)
    samples = []
    clock = time.perf_counter_ns
    for i in range(lookups):
        secret = secrets_[i % keys] if i % 10 else "jm_live_" + secrets.token_urlsafe(32)  # 10% unknown
        api = apis[i % 2]
        started = clock()
        index.check(secret, api=api)
        samples.append((clock() - started) / 1000)
    return percentiles(samples)


async def bench_stack(base: Settings, *, requests: int, rounds: int) -> dict[str, Any]:
    async with sandbox(base, jobmeter_batch_timeout_ms=20) as settings:
        app = create_app(settings, consumers=["accounts", "keys", "key-lifecycle", "caps"])
        async with serving(app) as url:
            admin = {ADMIN_HEADER: f"Bearer {settings.jobmeter_admin_token.get_secret_value()}"}
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                account = await client.post("/v1/accounts", headers=admin, json={
                    "account_id": "bench", "model": "subscription", "stripe_customer_id": "cus_BENCH"})
                account.raise_for_status()
                key = (await client.post("/v1/keys", headers=admin, json={"account_id": "bench"})).json()["key"]
                index: KeyIndex = app.state.key_index
                await _until(lambda: _state(index, key) == "active", 10)
                http = await _timed_checks(client, key, requests, 200)
                capping = await _caps(client, settings, index, admin, requests=requests, rounds=rounds)
                suspend, restore = [], []
                secret = settings.stripe_webhook_secret.get_secret_value()
                for n in range(rounds):
                    created = int(time.time()) - 2 * (rounds - n)
                    failed = build_event("invoice.payment_failed", "cus_BENCH", final=True, created=created,
                                         invoice_id=f"in_BENCH{n}")
                    suspend.append(await _post_and_wait(client, index, key, failed, secret, "suspended"))
                    paid = build_event("invoice.paid", "cus_BENCH", created=created + 1, invoice_id=f"in_BENCH{n}")
                    restore.append(await _post_and_wait(client, index, key, paid, secret, "active"))
    return {"http_ms": percentiles(http), **capping, "suspension_ms": percentiles(suspend),
            "restoration_ms": percentiles(restore)}


async def _caps(client: httpx.AsyncClient, settings: Settings, index: KeyIndex, admin: dict[str, str], *,
                requests: int, rounds: int) -> dict[str, dict[str, float]]:
    """Cap → check round trips on an account of its own, then the HTTP check of its key while capped."""
    account = await client.post("/v1/accounts", headers=admin, json={"account_id": "bench-cap", "model": "payg"})
    account.raise_for_status()
    key = (await client.post("/v1/keys", headers=admin, json={"account_id": "bench-cap"})).json()["key"]
    await _until(lambda: _state(index, key) == "active", 10)
    ingest = {ADMIN_HEADER: f"Bearer {settings.jobmeter_ingest_token.get_secret_value()}"}
    reach, lift = [], []
    for n in range(rounds):
        (await client.put("/v1/accounts/bench-cap/caps", headers=admin, json={"jobs": n + 1})).raise_for_status()
        await _until_async(lambda cap=n + 1: _cap_folded(client, admin, cap), 10)
        job = {"account_id": "bench-cap", "api": settings.jobmeter_apis[0], "job_id": f"cap-{n}",
               "channel": "direct", "mode": "sync", "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (await client.post("/v1/jobs/completed", headers=ingest, json=job)).raise_for_status()
        accepted = time.perf_counter()
        await _until(lambda: _state(index, key) == "capped", 10)
        reach.append((time.perf_counter() - accepted) * 1000)
        if n == rounds - 1:
            break  # the last round stays capped, for the HTTP figure below
        (await client.put("/v1/accounts/bench-cap/caps", headers=admin, json={"jobs": 10_000})).raise_for_status()
        raised = time.perf_counter()
        await _until(lambda: _state(index, key) == "active", 10)
        lift.append((time.perf_counter() - raised) * 1000)
    http = await _timed_checks(client, key, requests, 429)
    found = {"http_capped_ms": percentiles(http), "cap_reached_ms": percentiles(reach)}
    if len(lift) > 1:
        found["cap_raised_ms"] = percentiles(lift)
    return found


async def _cap_folded(client: httpx.AsyncClient, admin: dict[str, str], jobs: int) -> bool:
    shown = (await client.get("/v1/accounts/bench-cap/caps", headers=admin)).json()
    return any(c["jobs"] == jobs for c in shown["caps"])


async def _until_async(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the caps consumer did not catch up")
        await asyncio.sleep(0.01)


def _state(index: KeyIndex, key: str) -> str | None:
    found = index.check(key)
    return found.state if found else None


async def _until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the key index did not catch up")
        await asyncio.sleep(0.001)


async def _post_and_wait(
    client: httpx.AsyncClient, index: KeyIndex, key: str, event: dict[str, Any], secret: str, state: str
) -> float:
    body = encode_event(event)
    response = await client.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, secret)})
    response.raise_for_status()
    accepted = time.perf_counter()
    await _until(lambda: _state(index, key) == state, 10)
    return (time.perf_counter() - accepted) * 1000


def keys(
    requests: Annotated[int, typer.Option(help="key checks over HTTP")] = 2000,
    rounds: Annotated[int, typer.Option(help="suspend/restore round trips")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Key-check latency in process and over HTTP, and how long a suspension takes to reach the check."""
    result = {"in_process_us": bench_index(), "in_process_capped_us": bench_index(capped=True),
              "in_process_per_api_us": bench_index(capped=True, scoped=True)}
    result.update(asyncio.run(bench_stack(get_settings(), requests=requests, rounds=rounds)))
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for name, stats in result.items():
        unit = "µs" if name.endswith("_us") else "ms"
        print(f"{name.rsplit('_', 1)[0]:<20} p50 {stats['p50']:8.3f} {unit}   p99 {stats['p99']:8.3f} "
              f"{unit}   max {stats['max']:8.3f} {unit}   (n={int(stats['n'])})")


async def _timed_checks(client: httpx.AsyncClient, key: str, requests: int, expected: int) -> list[float]:
    """`requests` key checks over HTTP one after the other, each in ms; RuntimeError on any other status."""
    check = {"Authorization": f"Bearer {key}"}
    took = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await client.get("/v1/keys/check", headers=check)
        took.append((time.perf_counter() - started) * 1000)
        if response.status_code != expected:
            raise RuntimeError(f"the key check answered {response.status_code}, not {expected}")
    return took
