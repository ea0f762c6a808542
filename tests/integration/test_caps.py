"""Usage caps on the real stack: a hard cap reached stops the key at the check (429, Retry-After to the period's
end) within a moment of the job that reached it, the gateway middleware passes that on, raising the cap lifts it,
the cap clock lifts it once the period is over, and each alert fires once per period, also after a restart."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from events.registry import REGISTRY
from events.usage import UsageCapReached, UsageThresholdCrossed
from jobmeter.settings import Settings
from projections import replay
from projections.caps.rules import month_of
from services.gateway.keycheck import KeyCheckMiddleware
from services.gateway.sample_app import running_gateway
from services.http.app import create_app
from services.keys.cap_clock import publish_period_ends
from services.platform.serving import free_port, serving
from services.stripe_adapter.fixtures import build_event
from tests.integration.cli import run_cli
from tests.integration.helpers import (
    ADMIN,
    INGEST,
    applied_to_end,
    client_for,
    eventually,
    fetchval,
    job,
    read_to_end,
)
from tests.integration.test_key_lifecycle import bearer, check, new_key, register, signed_post, until_status

pytestmark = pytest.mark.integration

CONSUMERS = ["accounts", "keys", "caps"]


async def caps_of(client: httpx.AsyncClient, account: str) -> dict[str, Any]:
    response = await client.get(f"/v1/accounts/{account}/caps", headers=ADMIN)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def put_cap(client: httpx.AsyncClient, account: str, **body: Any) -> None:
    response = await client.put(f"/v1/accounts/{account}/caps", json=body, headers=ADMIN)
    assert response.status_code == 202, response.text
    await eventually(lambda: caps_of(client, account),
                     lambda c: any(cap["jobs"] == body["jobs"] and cap["api"] == body.get("api") for cap in c["caps"]))


async def ingest(client: httpx.AsyncClient, account: str, *job_ids: str, api: str = "extract") -> None:
    response = await client.post("/v1/jobs/completed", json=[job(account, j, api=api) for j in job_ids],
                                 headers=INGEST)
    assert response.status_code == 202, response.text


async def alerts(settings: Settings) -> list[Any]:
    """The alerts on the billing topic, one per event id: the outbox relay publishes at least once (a process
    stopped between publishing and marking a row sent publishes it again), and readers dedupe by id."""
    decoded = [REGISTRY.decode(r.value or b"") for r in await read_to_end(settings, "billing")]
    once = {envelope.event_id: event for envelope, event in decoded}
    return [e for e in once.values() if isinstance(e, UsageThresholdCrossed | UsageCapReached)]


async def test_a_hard_cap_stops_the_key_at_the_check_and_raising_it_lifts_it(settings: Settings) -> None:
    jobmeter = create_app(settings, consumers=CONSUMERS)
    upstream = FastAPI()

    @upstream.get("/v1/extract")
    async def extract(request: Request) -> dict[str, Any]:
        return {"billed_to": request.state.jobmeter_key["account_id"]}

    upstream.add_middleware(KeyCheckMiddleware, check_url="http://jobmeter.test/v1/keys/check",
                            transport=httpx.ASGITransport(jobmeter), ttl_seconds=0.0)
    async with client_for(jobmeter) as client:
        await register(client, "capco", "cus_CAPCO")
        key = (await new_key(client, "capco"))["key"]
        await until_status(client, key, 200)
        await put_cap(client, "capco", jobs=5)

        await ingest(client, "capco", *[f"j{i}" for i in range(4)])
        await ingest(client, "capco", "j0", "j1")  # duplicates count once
        await eventually(lambda: caps_of(client, "capco"), lambda c: c["caps"][0]["used"] == 4)
        await applied_to_end(settings, "keys", "keys")
        assert (await check(client, key)).status_code == 200  # 4 of 5: still working

        started = time.monotonic()
        await ingest(client, "capco", "j4")  # the fifth job reaches the cap
        await eventually(lambda: check(client, key), lambda r: r.status_code == 429, timeout=10)
        reached_after = time.monotonic() - started
        denied = await check(client, key)
        body = denied.json()
        assert body["state"] == "capped" and body["reason"] == "cap: hard cap reached: 5 jobs this period"
        assert [h["source"] for h in body["holds"]] == ["cap"]
        to_period_end = (month_of(datetime.now(UTC)).end - datetime.now(UTC)).total_seconds()
        retry_after = int(denied.headers["Retry-After"])
        assert retry_after == body["retry_after"] and abs(retry_after - to_period_end) < 60

        async with httpx.AsyncClient(transport=httpx.ASGITransport(upstream), base_url="http://api.test") as api:
            refused = await api.get("/v1/extract", headers=bearer(key))
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
            assert refused.json()["state"] == "capped"

            await put_cap(client, "capco", jobs=10)  # raised: the hold is released
            await until_status(client, key, 200)
            assert (await api.get("/v1/extract", headers=bearer(key))).json() == {"billed_to": "capco"}

        listed = await eventually(lambda: client.get("/v1/keys", params={"account_id": "capco"}, headers=ADMIN),
                                  lambda r: [k["suspended"] for k in r.json()] == [False])
        assert listed.json()[0]["held_by"] == []

    print(f"the cap reached the key check {reached_after:.3f}s after the job's ingest answered")
    assert reached_after < 5.0  # generous: what is measured is printed above (the issue asks for about a second)

    found = await alerts(settings)
    assert sorted((type(e).__name__, getattr(e, "threshold_percent", None), e.limit) for e in found) == [
        ("UsageCapReached", None, 5), ("UsageThresholdCrossed", 80, 5), ("UsageThresholdCrossed", 100, 5)]


async def test_the_clock_lifts_a_cap_when_its_period_ends_and_alerts_fire_once_across_a_restart(
    settings: Settings,
) -> None:
    async with client_for(create_app(settings, consumers=CONSUMERS)) as client:
        await register(client, "monthly", "cus_MONTHLY")
        key = (await new_key(client, "monthly"))["key"]
        await put_cap(client, "monthly", jobs=2, api="classify")
        await ingest(client, "monthly", "e1", "e2", "e3")  # other surfaces do not count
        await ingest(client, "monthly", "c1", "c2", api="classify")
        await until_status(client, key, 429)
        assert "2 jobs on classify" in (await check(client, key)).json()["reason"]

    # A restarted consumer (a new process) folds nothing twice and raises no alert again.
    app = create_app(settings, consumers=CONSUMERS)
    async with client_for(app) as client:
        await ingest(client, "monthly", "c1", "c2", api="classify")  # republished: duplicates
        await applied_to_end(settings, "caps", "accounts", "jobs")
        assert (await check(client, key)).status_code == 429
        res = app.state.runtime.res
        assert await publish_period_ends(res, "caps") == []  # the period is not over
        end = month_of(datetime.now(UTC)).end
        ticks = await publish_period_ends(res, "caps", now=end + timedelta(seconds=1))
        assert [(t.account_id, t.period_end) for t in ticks] == [("monthly", end)]
        await until_status(client, key, 200)
        assert await publish_period_ends(res, "caps", now=end + timedelta(seconds=1)) == []  # released: nothing due
        shown = await caps_of(client, "monthly")
        assert shown["held"] is False and datetime.fromisoformat(shown["period_start"]) == end
        await applied_to_end(settings, "caps", "accounts", "jobs")
        # A replay of the whole log counts the same jobs against the same caps, and ends in the same period, unheld.
        rebuilt = await replay.rebuild(settings, "caps")
        assert (rebuilt.partial, rebuilt.dead) == (False, 0)
        assert await replay.verify(settings, "caps") == []
        standing = "SELECT string_agg(account_id || ':' || held::text || ':' || period_start::text, ',') FROM {}"
        assert await fetchval(settings, standing.format("caps__rebuild.standing")) == \
            await fetchval(settings, standing.format("caps.standing"))

    found = await alerts(settings)
    kinds = sorted((type(e).__name__, getattr(e, "threshold_percent", None), e.api) for e in found)
    assert kinds == [("UsageCapReached", None, "classify"), ("UsageThresholdCrossed", 80, "classify"),
                     ("UsageThresholdCrossed", 100, "classify")]


async def test_an_account_with_a_subscription_is_capped_over_its_stripe_period_whichever_topic_came_first(
    settings: Settings,
) -> None:
    consumers = [*CONSUMERS, "subscriptions"]
    # The plan includes two jobs a period: crossing 80 % and 100 % of them is an alert each (never a hold).
    settings = settings.model_copy(update={"stripe_pro_price_id": "price_pro_m", "jobmeter_plan_included_jobs": 2})
    async with client_for(create_app(settings, consumers=consumers)) as client:
        await register(client, "subbed", "cus_SUBBED")
        key = (await new_key(client, "subbed"))["key"]
        await put_cap(client, "subbed", jobs=3)
        now = datetime.now(UTC)
        before_period = now - timedelta(days=3)
        # Jobs first: folded before the caps consumer knows the subscription, counted on the calendar month.
        await client.post("/v1/jobs/completed", headers=INGEST, json=[
            job("subbed", "old1", at=before_period), job("subbed", "old2", at=before_period), job("subbed", "n1")])
        await eventually(lambda: caps_of(client, "subbed"), lambda c: c["caps"][0]["used"] >= 1)
        # The subscription's period started two days ago (Stripe's `current_period_start`) and ends in 28 days.
        created = int(now.timestamp()) - 24 * 3600
        subscribed = build_event("customer.subscription.updated", "cus_SUBBED", status="active", created=created)
        subscribed["data"]["object"]["items"] = {"data": [{"id": "si_base", "price": {
            "id": "price_pro_m", "recurring": {"interval": "month", "usage_type": "licensed"}}}]}
        await signed_post(client, subscribed)
        start = datetime.fromtimestamp(created - 24 * 3600, UTC)
        shown = await eventually(lambda: caps_of(client, "subbed"),
                                 lambda c: c["period_start"] and datetime.fromisoformat(c["period_start"]) == start)
        assert shown["caps"][0]["used"] == 1  # the jobs before the period no longer count
        # Counted on the calendar month, the three jobs may have reached the cap first: its release travels through
        # the outbox and the log to the key index, so the check is polled, not read once.
        assert (await eventually(lambda: check(client, key), lambda r: r.status_code == 200)).status_code == 200

        await ingest(client, "subbed", "n2", "n3")
        denied = await eventually(lambda: check(client, key), lambda r: r.status_code == 429)
        end = datetime.fromtimestamp(created + 29 * 24 * 3600, UTC)
        assert abs(int(denied.headers["Retry-After"]) - (end - datetime.now(UTC)).total_seconds()) < 60

        async def included() -> list[tuple[int, int, bool]]:
            return sorted((e.threshold_percent, e.limit, e.used >= 2) for e in await alerts(settings)
                          if isinstance(e, UsageThresholdCrossed) and e.limit_kind == "included")

        assert await eventually(included, lambda found: len(found) >= 2) == [(80, 2, True), (100, 2, True)]


async def cli(settings: Settings, *args: str) -> str:
    done = await run_cli(settings, "caps", *args)
    assert done.exit_code == 0, done.output
    return done.stdout


async def test_the_cli_sets_lists_and_clears_caps(settings: Settings) -> None:
    async with client_for(create_app(settings, consumers=CONSUMERS)) as client:
        await register(client, "clicap", "cus_CLICAP")
        set_ = json.loads(await cli(settings, "set", "clicap", "--jobs", "7", "--api", "extract", "--soft",
                                    "--spend", "500"))
        assert (set_["type"], set_["jobs"], set_["api"], set_["hard"], set_["spend_minor"]) == \
            ("CapSet", 7, "extract", False, 500)
        await eventually(lambda: caps_of(client, "clicap"), lambda c: len(c["caps"]) == 1)
        listed = json.loads(await cli(settings, "list", "--account", "clicap", "--format", "json"))
        assert [(c["api"], c["jobs"], c["hard"], c["used"]) for c in listed] == [("extract", 7, False, 0)]
        await cli(settings, "clear", "clicap", "--api", "extract")
        await eventually(lambda: caps_of(client, "clicap"), lambda c: c["caps"] == [])
        refused = await client.put("/v1/accounts/nobody/caps", json={"jobs": 1}, headers=ADMIN)
        assert refused.status_code == 404
        unknown = await client.put("/v1/accounts/clicap/caps", json={"jobs": 1, "api": "nosuchapi"}, headers=ADMIN)
        assert unknown.status_code == 422


async def test_a_cap_on_one_surface_stops_that_surface_only_and_one_on_all_jobs_stops_every_surface(
    settings: Settings,
) -> None:
    """jobmeter and the sample gateway each on a port of their own: the gateway names each call's surface."""
    async with serving(create_app(settings, consumers=CONSUMERS)) as url, \
            httpx.AsyncClient(base_url=url, timeout=10) as client:
        await register(client, "surfaces", "cus_SURFACES")
        key = (await new_key(client, "surfaces"))["key"]
        await until_status(client, key, 200)
        await put_cap(client, "surfaces", jobs=2, api="classify")

        async def check_on(api: str | None) -> httpx.Response:
            return await client.get("/v1/keys/check", params={"api": api} if api else None, headers=bearer(key))

        async with running_gateway(settings, port=free_port(), jobmeter_url=url) as address, \
                httpx.AsyncClient(base_url=address, timeout=10) as gateway:
            async def call(api: str) -> httpx.Response:
                return await gateway.post(f"/v1/{api}", json={"text": "a b"}, headers=bearer(key))

            for _ in range(2):  # two classify jobs, through the gateway: the cap on classify is reached
                assert (await call("classify")).status_code == 200
            denied = await eventually(lambda: check_on("classify"), lambda r: r.status_code == 429, timeout=10)
            assert denied.json()["holds"] == [{"source": "cap", "reason": "hard cap reached: 2 jobs on classify "
                                               "this period", "until": month_of(datetime.now(UTC)).end.isoformat(),
                                               "scope": ["classify"]}]
            assert int(denied.headers["Retry-After"]) > 0
            assert (await check_on("extract")).json()["state"] == "active"
            assert (await check_on(None)).status_code == 429  # a caller that does not say which surface: refused
            unknown = await check_on("nosuchapi")
            assert unknown.status_code == 422 and "nosuchapi" in unknown.json()["detail"]

            # The gateway passes its surface: classify is refused (once its 1 s cache of the last answer ends),
            # extract goes on working.
            refused = await eventually(lambda: call("classify"), lambda r: r.status_code == 429, timeout=10)
            assert refused.json()["state"] == "capped" and int(refused.headers["retry-after"]) > 0
            assert (await call("extract")).status_code == 200  # a third job: on extract

            # A new process loads the holds, with their scope, from the key store.
            await applied_to_end(settings, "keys", "keys")
            async with serving(create_app(settings, consumers=[])) as again, \
                    httpx.AsyncClient(base_url=again) as fresh:
                async def fresh_check(api: str) -> int:
                    response = await fresh.get("/v1/keys/check", params={"api": api}, headers=bearer(key))
                    return response.status_code

                assert (await fresh_check("classify"), await fresh_check("extract")) == (429, 200)

            # A cap on all jobs, reached by the three so far, stops every surface.
            await put_cap(client, "surfaces", jobs=3)
            everywhere = await eventually(lambda: check_on("extract"), lambda r: r.status_code == 429, timeout=10)
            assert everywhere.json()["holds"][0]["scope"] is None
            assert (await eventually(lambda: call("extract"), lambda r: r.status_code == 429)).status_code == 429
