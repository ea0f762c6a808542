"""A PAYG balance below its threshold, on the real stack (Kafka, Postgres, a loopback webhook endpoint, a local SMTP
sink): an account with NO auto-recharge whose jobs take its balance below the threshold raises exactly one
`BalanceLow` on the bus, one `balance.low` delivery and one alert mail to its contact; more jobs while it stays low
raise nothing; a top-up back above the threshold re-arms it, and jobs below it again raise a second one. A refold of
the whole PAYG log from offset 0 raises none again."""

from __future__ import annotations

import json
from email import message_from_bytes
from typing import Any

import pytest

from events.payg import BalanceLow
from events.registry import REGISTRY
from jobmeter.settings import Settings
from services.http.app import create_app
from services.webhooks.commands import add_endpoint
from tests.integration import test_payg
from tests.integration.helpers import ADMIN, applied_to_end, client_for, eventually, fetchval, read_to_end
from tests.integration.test_alert_mails import create, mailing
from tests.integration.test_notify import smtp_sink
from tests.integration.test_outgoing_webhooks import Receiver, quick
from tests.integration.test_payg import balance_is, job, our_topup, publish

pytestmark = pytest.mark.integration

payg_policy = test_payg.payg_policy  # autouse: extract = 5 per job, allowance 50

CONSUMERS = ["accounts", "payg", "webhooks"]
WEBHOOK_TOPICS = ("accounts", "billing", "keys", "payg")
THRESHOLD = 100
BALANCE = "SELECT {} FROM payg.balances WHERE account_id = 'low'"


async def on_the_bus(settings: Settings) -> list[BalanceLow]:
    """Every BalanceLow the relay published so far, once all the PAYG outbox is out."""
    unsent = "SELECT count(*) FROM payg.outbox WHERE sent_at IS NULL"
    await eventually(lambda: fetchval(settings, unsent), lambda n: n == 0)
    decoded = [REGISTRY.decode(r.value)[1] for r in await read_to_end(settings, "payg") if r.value is not None]
    return [e for e in decoded if isinstance(e, BalanceLow)]


async def settled(settings: Settings) -> None:
    """Everything published so far folded by PAYG, its events out, and folded by the webhooks consumer."""
    await applied_to_end(settings, "payg", "accounts", "jobs", "stripe", "payg")
    await on_the_bus(settings)
    await applied_to_end(settings, "outgoing_webhooks", *WEBHOOK_TOPICS)


async def alerts(settings: Settings) -> tuple[int, int, int]:
    """(BalanceLow in the outbox, balance.low deliveries, alert mails) so far."""
    return (
        int(await fetchval(settings, "SELECT count(*) FROM payg.outbox WHERE envelope::json->>'type' = 'BalanceLow'")),
        int(await fetchval(settings, "SELECT count(*) FROM outgoing_webhooks.deliveries WHERE type = 'balance.low'")),
        int(await fetchval(settings, "SELECT count(*) FROM outgoing_webhooks.alert_mails")),
    )


async def after(app: Any, client: Any, settings: Settings, events: list[Any], balance: int) -> tuple[int, int, int]:
    """Publish `events`, wait for the balance they lead to and for everything to settle: the alerts then."""
    await publish(app, *events)
    await balance_is(client, "low", balance)
    await settled(settings)
    return await alerts(settings)


async def test_a_balance_without_auto_recharge_alerts_once_per_crossing_below_its_threshold(
    settings: Settings,
) -> None:
    async with smtp_sink() as (port, received):
        settings = mailing(quick(settings), port)
        with Receiver() as receiver:
            app = create_app(settings, consumers=CONSUMERS)
            async with client_for(app) as client:
                assert (await create(client, "low", "ops@low.example")).status_code == 201
                # Configured once PAYG knows the account (a configuration of an account it does not know is not
                # kept), and folded before any money moves.
                await eventually(lambda: fetchval(settings, BALANCE.format("count(*)")), lambda n: n == 1)
                configured = await client.post("/v1/accounts/low/payg/config", headers=ADMIN, json={
                    "threshold_minor": THRESHOLD, "recharge_minor": 1000, "auto_recharge": False})
                assert configured.status_code == 202, configured.text
                await eventually(lambda: fetchval(settings, BALANCE.format("threshold_minor")),
                                 lambda t: t == THRESHOLD)
                assert (await add_endpoint(app.state.runtime.res, "low", receiver.url, ["balance.low"])).folded

                # Above the threshold: a balance opens low (it never was at its threshold), the top-up re-arms it.
                assert await after(app, client, settings, [our_topup("low", "cs_test_low_1", 130)], 130) == (0, 0, 0)

                # 8 jobs of 5: 130 → 90, below 100. One alert, however the jobs were cut into batches.
                assert await after(app, client, settings, [job("low", f"a{i}") for i in range(8)], 90) == (1, 1, 1)
                first = await on_the_bus(settings)
                assert [(e.crossing, e.threshold_minor, e.currency) for e in first] == [(1, THRESHOLD, "usd")]
                assert 90 <= first[0].balance_minor < THRESHOLD

                # Staying low (down to below zero, within the allowance): nothing more.
                assert await after(app, client, settings, [job("low", f"b{i}") for i in range(20)], -10) == (1, 1, 1)

                # Topped up above the threshold (re-armed), then jobs below it again: a second alert.
                assert await after(app, client, settings, [our_topup("low", "cs_test_low_2", 150)], 140) == (1, 1, 1)
                assert await after(app, client, settings, [job("low", f"c{i}") for i in range(10)], 90) == (2, 2, 2)
                await eventually(receiver.count, lambda n: n == 2)
                await eventually(lambda: fetchval(settings, "SELECT count(*) FROM outgoing_webhooks.alert_mails "
                                                            "WHERE sent_at IS NOT NULL"), lambda n: n == 2)

            # The PAYG consumer refolds its whole log from offset 0: the same balances, no crossing raised again.
            await fetchval(settings, "DELETE FROM payg.positions")
            app = create_app(settings, consumers=CONSUMERS)
            async with client_for(app) as client:
                await settled(settings)
                await balance_is(client, "low", 90)
                assert await alerts(settings) == (2, 2, 2)

        lows = await on_the_bus(settings)
        assert [e.crossing for e in lows] == [1, 2] and len({e.natural_id() for e in lows}) == 2
        bodies = [json.loads(body) for _, body in receiver.received]
        assert [(b["type"], b["account_id"]) for b in bodies] == [("balance.low", "low")] * 2
        assert {b["data"]["threshold_minor"] for b in bodies} == {THRESHOLD}
        assert all(b["data"]["balance_minor"] < THRESHOLD and b["data"]["currency"] == "usd" for b in bodies)
        assert len({b["id"] for b in bodies}) == 2

    messages = [message_from_bytes(m) for m in received]
    assert [m["To"] for m in messages] == ["ops@low.example"] * 2
    assert {str(m["Subject"]) for m in messages} == {"Account low: prepaid balance low"}
