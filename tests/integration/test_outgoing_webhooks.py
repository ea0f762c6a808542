"""Outgoing webhooks on the real stack, to a real HTTP endpoint on a loopback port: a delivery that fails twice (a
500, then no answer within the timeout) and is then answered 200 arrives three times under one id, byte for byte
the same body, each signed so that the recipe in docs/webhooks.md accepts it; refolding the whole log and
publishing the event again records no second delivery and sends nothing more; `jobmeter webhooks add --json` prints
the endpoint's id and secret, and nothing else ever prints the secret."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from events.accounts import AccountRegistered
from events.keys import KeyRestored, KeySuspended
from events.usage import UsageCapReached, UsageThresholdCrossed
from events.webhooks import WebhookEndpointAdded
from jobmeter.settings import Settings
from services.engine import doctor
from services.engine.runtime import build_runtime
from services.http.app import create_app
from services.platform.resources import Resources
from services.webhooks.commands import add_endpoint
from services.webhooks.signing import endpoint_secret
from tests.integration.helpers import applied_to_end, client_for, eventually, fetchval
from tests.integration.scripted_server import ScriptedServer
from tests.integration.test_console_auth import log_in
from tests.integration.test_deadletters_cli import jobmeter

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
TIMEOUT = 0.5


def documented_verify() -> Callable[[str, str, bytes], bool]:
    """The verification recipe exactly as docs/webhooks.md prints it."""
    section = DOCS.read_text().split("## Verifying a signature", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "docs/webhooks.md lost its Python recipe"
    scope: dict[str, Any] = {}
    exec(code.group(1), scope)  # noqa: S102 - our own documentation, run to prove it right
    verify: Callable[[str, str, bytes], bool] = scope["verify"]
    return verify


class Receiver(ScriptedServer):
    """A customer's endpoint: records every request, answers by the script ("500", "slow": no answer within the
    sender's timeout, anything else: 200)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        super().__init__()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with server._lock:
                    server.received.append(({**dict(self.headers.items()), "path": self.path}, body))
                action = server._next_action()
                if action == "slow":
                    time.sleep(TIMEOUT * 4)
                status = 500 if action == "500" else 200
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting: that was the point

            def log_message(self, *args: object) -> None:
                return None

        return Handler

    async def count(self) -> int:
        with self._lock:
            return len(self.received)


def quick(settings: Settings) -> Settings:
    return settings.model_copy(update={"jobmeter_webhook_retry_scale": 0.001, "jobmeter_webhook_poll_seconds": 0.05,
                                       "jobmeter_webhook_timeout_seconds": TIMEOUT})


async def registered(res: Resources, settings: Settings, account: str) -> None:
    await res.publisher.publish(AccountRegistered(account_id=account, model="subscription"))
    await eventually(lambda: fetchval(settings, "SELECT count(*) FROM accounts.accounts WHERE account_id = $1",
                                      account), lambda n: n == 1)


def suspension(account: str) -> KeySuspended:
    return KeySuspended(account_id=account, source="dunning", reason="invoice_payment_failed", cause="evt_hook_1",
                        effective_at=datetime.now(UTC), sequence=1)


DELIVERY = "SELECT {} FROM outgoing_webhooks.deliveries"



async def test_a_failing_endpoint_gets_the_same_signed_delivery_until_it_answers_200(settings: Settings) -> None:
    settings = quick(settings)
    verify = documented_verify()
    with Receiver() as receiver:
        receiver.play(["500", "slow", "200"])
        async with build_runtime(settings, ["accounts", "webhooks"]).running(producer="test") as runtime:
            res = runtime.res
            await registered(res, settings, "acme")
            endpoint = await add_endpoint(res, "acme", f"{receiver.url}/hooks", ["keys.suspended"])
            assert endpoint.folded
            assert endpoint.secret == endpoint_secret("dev-webhook-signing-key", endpoint.endpoint_id)
            await res.publisher.publish(suspension("acme"))
            await eventually(lambda: fetchval(settings, DELIVERY.format("state")), lambda s: s == "delivered")

        assert await receiver.count() == 3
        bodies = {body for _, body in receiver.received}
        assert len(bodies) == 1, "every attempt sends the same bytes"
        delivered = json.loads(bodies.pop())
        assert set(delivered) == {"id", "type", "created", "account_id", "data"}
        assert delivered["type"] == "keys.suspended" and delivered["account_id"] == "acme"
        assert delivered["data"]["source"] == "dunning" and delivered["data"]["reason"] == "invoice_payment_failed"
        assert delivered["id"] == str(await fetchval(settings, DELIVERY.format("delivery_id")))
        for headers, body in receiver.received:
            assert verify(endpoint.secret, headers["Jobmeter-Signature"], body)
            assert not verify(endpoint_secret("another-key", endpoint.endpoint_id), headers["Jobmeter-Signature"],
                              body)
            assert not verify(endpoint.secret, headers["Jobmeter-Signature"], body.replace(b"acme", b"acmf"))
        assert await fetchval(settings, DELIVERY.format("attempts")) == 3
        assert await fetchval(settings, DELIVERY.format("last_status")) == 200

        # A restart that refolds the whole log from offset 0, and the same fact published again: nothing new.
        await fetchval(settings, "DELETE FROM outgoing_webhooks.positions")
        async with build_runtime(settings, ["accounts", "webhooks"]).running(producer="test") as runtime:
            await runtime.res.publisher.publish(suspension("acme"))
            await applied_to_end(settings, "outgoing_webhooks", "accounts", "keys", "payg")
            assert await fetchval(settings, DELIVERY.format("count(*)")) == 1
            assert await fetchval(settings, DELIVERY.format("state")) == "delivered"
            # `jobmeter replay webhooks`: a rebuild beside the live tables, the same delivery id, nothing sent.
            code, out, err = await jobmeter(settings, "replay", "webhooks", "--verify")
            assert code == 0, out + err
            rebuilt = "SELECT {} FROM outgoing_webhooks__rebuild.deliveries"
            assert await fetchval(settings, rebuilt.format("count(*)")) == 1
            assert await fetchval(settings, rebuilt.format("delivery_id::text")) == delivered["id"]
            code, out, err = await jobmeter(settings, "replay", "webhooks", "--swap")
            assert code != 0 and "POST the whole history again" in out + err
        assert await receiver.count() == 3


async def test_an_endpoint_folded_after_an_event_still_receives_it_but_not_what_came_before_it(
    settings: Settings,
) -> None:
    """An endpoint's addition (accounts topic) may be folded after an event it should receive (another topic, read
    ahead): the delivery is made when the addition is folded, decided by the times on the log; an event from before
    the endpoint existed is never sent to it."""
    settings = quick(settings)
    with Receiver() as receiver:
        async with build_runtime(settings, ["accounts", "webhooks"]).running(producer="test") as runtime:
            res = runtime.res
            await registered(res, settings, "late")
            await res.publisher.publish(suspension("late"))  # before the endpoint existed: for nobody
            added_at = datetime.now(UTC)
            await res.publisher.publish(KeyRestored(account_id="late", source="dunning", reason="invoice_paid",
                                                    cause="evt_hook_2", effective_at=added_at, sequence=2))
            await applied_to_end(settings, "outgoing_webhooks", "keys")
            assert await fetchval(settings, DELIVERY.format("count(*)")) == 0
            await res.publisher.publish(WebhookEndpointAdded(account_id="late", endpoint_id="we_" + "0" * 24,
                                                             url=receiver.url, added_at=added_at))
            await eventually(receiver.count, lambda n: n >= 1)
            await applied_to_end(settings, "outgoing_webhooks", "accounts", "keys")
            assert await fetchval(settings, DELIVERY.format("count(*)")) == 1
        assert [json.loads(body)["type"] for _, body in receiver.received] == ["keys.restored"]


async def test_webhooks_add_json_prints_the_id_and_secret_once(settings: Settings) -> None:
    async with build_runtime(settings, ["accounts", "webhooks"]).running(producer="test") as runtime:
        await registered(runtime.res, settings, "cli")
        code, out, err = await jobmeter(settings, "webhooks", "add", "cli", "--url", "https://example.com/h",
                                        "--events", "keys.suspended,balance.low", "--json")
        assert code == 0, err
        added = json.loads(out)
        assert set(added) == {"id", "secret"}
        assert added["secret"] == endpoint_secret(settings.jobmeter_webhook_signing_key.get_secret_value(),
                                                  added["id"])
        assert added["secret"] not in err
        code, listed, err = await jobmeter(settings, "webhooks", "list", "cli", "--format", "json")
        assert code == 0, err
        rows = json.loads(listed)
        assert [r["endpoint_id"] for r in rows] == [added["id"]]
        assert rows[0]["event_types"] == "balance.low,keys.suspended"
        assert added["secret"] not in listed
        code, _, err = await jobmeter(settings, "webhooks", "add", "cli", "--url", "https://example.com/h",
                                      "--events", "keys.nonsense")
        assert code == 2 and "unknown type" in err


async def test_a_delivery_still_failing_past_the_bound_is_listed_by_the_doctor_the_cli_and_the_console(
    settings: Settings,
) -> None:
    # Retries after 50 ms, 300 ms, …; the doctor's bound is 36 s: far from the first retries on a slow machine.
    settings = quick(settings).model_copy(update={"jobmeter_webhook_retry_scale": 0.01})
    with Receiver() as receiver:
        receiver.play(["500"] * 1000)
        app = create_app(settings, consumers=["accounts", "webhooks"])
        async with client_for(app) as client:
            res: Resources = app.state.runtime.res
            await registered(res, settings, "down")
            await add_endpoint(res, "down", receiver.url)
            await res.publisher.publish(suspension("down"))
            await eventually(lambda: fetchval(settings, DELIVERY.format("attempts")), lambda n: (n or 0) >= 2)

            now = datetime.now(UTC)
            assert [i for i in await doctor.gather(res, now) if i.kind.startswith("webhook")] == [], \
                "failing, but for less than the bound"
            later = [i for i in await doctor.gather(res, now + timedelta(hours=1)) if i.kind.startswith("webhook")]
            assert [(i.kind, i.subject) for i in later] == [("webhook-delivery-failing", "down")]
            assert "HTTP 500" in later[0].detail and later[0].resolve == "jobmeter webhooks deliveries down"

            code, out, err = await jobmeter(settings, "webhooks", "deliveries", "down", "--json")
            assert code == 0, err
            listed = json.loads(out)
            assert [(d["type"], d["state"], d["last_status"]) for d in listed] == [("keys.suspended", "pending", 500)]
            await log_in(client)
            page = (await client.get("/console/accounts/down")).text
            section = page.split('id="deliveries-heading"', 1)[1].split("</section>", 1)[0]
            assert receiver.url in section and "keys.suspended" in section and "pending" in section


async def test_usage_alerts_on_the_billing_topic_reach_the_endpoints_that_take_them(settings: Settings) -> None:
    settings = quick(settings)
    with Receiver() as receiver:
        async with build_runtime(settings, ["accounts", "webhooks"]).running(producer="test") as runtime:
            res = runtime.res
            await registered(res, settings, "capped")
            await add_endpoint(res, "capped", f"{receiver.url}/caps", ["usage.cap_reached"])
            await add_endpoint(res, "capped", f"{receiver.url}/all")
            now = datetime.now(UTC)
            period = {"period_start": now.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
                      "period_end": now + timedelta(days=31)}
            await res.publisher.publish_many([
                UsageThresholdCrossed(account_id="capped", **period, limit_kind="cap", threshold_percent=80,
                                      limit=10, used=8, crossed_at=now),
                UsageCapReached(account_id="capped", **period, limit_kind="cap", hard=True, limit=10, used=10,
                                reached_at=now),
            ])
            await eventually(receiver.count, lambda n: n >= 3)
            await applied_to_end(settings, "outgoing_webhooks", "accounts", "billing")
        got = sorted((headers["path"], json.loads(body)["type"]) for headers, body in receiver.received)
        assert got == [("/all", "usage.cap_reached"), ("/all", "usage.threshold_crossed"),
                       ("/caps", "usage.cap_reached")]
        assert await fetchval(settings, DELIVERY.format("count(*)")) == 3
