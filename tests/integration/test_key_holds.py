"""One key state from many sources, on the real stack: the dunning policy and the PAYG balance each hold the
account's keys on their own, and PAYG releasing its hold does not lift the dunning suspension."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from events.jobs import JobCompleted
from events.stripe import StripeEventReceived
from jobmeter.settings import Settings
from services.http.app import create_app
from services.stripe_adapter.fixtures import build_event
from tests.integration.helpers import ADMIN, applied_to_end, client_for, eventually, fetchval
from tests.integration.test_key_lifecycle import check, new_key, register, signed_post, until_status

pytestmark = pytest.mark.integration

UNSENT = "SELECT count(*) FROM {}.outbox WHERE sent_at IS NULL"


async def settled(client: httpx.AsyncClient, settings: Settings, account: str) -> None:
    """Every key decision made so far has reached the key store and the key check: both outboxes are published,
    the key store has folded the topic to its end, and a key issued after them is known to the check (the index
    reads the account's partition in order, so it has applied everything before that key)."""
    for schema in ("payg", "key_lifecycle"):
        sql = UNSENT.format(schema)
        await eventually(lambda: fetchval(settings, sql), lambda n: n == 0)  # noqa: B023 - awaited in this turn
    sentinel = (await new_key(client, account))["key"]
    await eventually(lambda: check(client, sentinel), lambda r: r.status_code != 401)
    await applied_to_end(settings, "keys", "keys")


async def keys_suspended(client: httpx.AsyncClient, account: str) -> bool:
    response = await client.get(f"/v1/accounts/{account}/balance", headers=ADMIN)
    assert response.status_code == 200, response.text
    return bool(response.json()["keys_suspended"])


def top_up(account: str, amount: int) -> StripeEventReceived:
    """A completed top-up Checkout of `jobmeter payg topup`, as the bridge puts it on the stripe topic."""
    obj = {"id": f"cs_test_{account}", "object": "checkout.session", "mode": "payment", "payment_status": "paid",
           "amount_total": amount, "currency": "usd",
           "metadata": {"account_id": account, "purpose": "payg_topup"}}
    return StripeEventReceived(stripe_event_id=f"evt_topup_{account}", type="checkout.session.completed",
                               created=datetime.now(UTC), customer_id=None, data_object=obj)


async def test_a_payg_restore_does_not_lift_a_dunning_suspension(settings: Settings) -> None:
    app = create_app(settings, consumers=["accounts", "keys", "key-lifecycle", "payg"])
    async with client_for(app) as client:
        publisher = app.state.runtime.res.publisher
        await register(client, "both", "cus_BOTH", model="payg")
        key = (await new_key(client, "both"))["key"]
        await until_status(client, key, 200)

        # Dunning: the invoice's last attempt failed.
        failed = build_event("invoice.payment_failed", "cus_BOTH", final=True, created=int(time.time()) - 30)
        await signed_post(client, failed)
        await until_status(client, key, 403)
        # PAYG: a job empties the balance (no allowance, no card): PAYG holds the keys as well.
        await publisher.publish_many([JobCompleted(account_id="both", api="extract", job_id="j1", channel="direct",
                                                   mode="sync", completed_at=datetime.now(UTC))])
        await eventually(lambda: keys_suspended(client, "both"), lambda held: held)
        await settled(client, settings, "both")
        body = (await check(client, key)).json()
        assert body["state"] == "suspended"
        assert body["reason"].startswith("dunning: ") and "; payg: payg_exhausted" in body["reason"]

        # PAYG is paid: it releases its own hold, and only its own.
        await publisher.publish_many([top_up("both", 10_000)])
        await eventually(lambda: keys_suspended(client, "both"), lambda held: not held)
        await settled(client, settings, "both")
        denied = await check(client, key)
        assert denied.status_code == 403, denied.text
        assert denied.json()["reason"].startswith("dunning: ") and "payg" not in denied.json()["reason"]
        listed = (await client.get("/v1/keys", params={"account_id": "both"}, headers=ADMIN)).json()
        assert [k["suspended"] for k in listed] == [True, True, True]
        assert {(k["suspended_reason"].split(":")[0], tuple(k["held_by"])) for k in listed} == {
            ("dunning", ("dunning",))}

        # Dunning releases too (the invoice is paid): now no source holds the keys.
        paid = build_event("invoice.paid", "cus_BOTH", created=int(time.time()) - 10,
                           invoice_id=failed["data"]["object"]["id"])
        await signed_post(client, paid)
        await until_status(client, key, 200)
