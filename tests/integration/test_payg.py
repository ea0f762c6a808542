"""Pay-as-you-go on the real stack: Kafka, Postgres, and stripe-mock behind `PaygFakeStripeFront`.

Everything runs through the Runtime (consumers, outbox relay, recharger) in process; Stripe's webhooks are put on
the `stripe` topic as the bridge would put them (`StripeEventReceived`), duplicates included.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from events.deadletters import DeadLettered
from events.envelope import Event
from events.jobs import JobCompleted
from events.keys import KeyRestored, KeySuspended
from events.registry import REGISTRY
from events.stripe import StripeEventReceived
from events.topics import Topics
from jobmeter.settings import Settings, get_settings
from services.http.app import create_app
from services.payg import recharger as payg_recharger
from tests.integration.helpers import ADMIN, INGEST, client_for, eventually, fetchval, read_topic
from tests.integration.payg_stripe_front import PaygFakeStripeFront, payg_fake_stripe_front

pytestmark = pytest.mark.integration

PRICES = {"extract": 5, "classify": 3, "translate": 4, "summarize": 2}


@pytest.fixture(autouse=True)
def payg_policy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A small allowance, two failures, a 2 s back-off: in the environment the `settings` fixture reads."""
    for name, value in {"ALLOWANCE_MINOR": "50", "MAX_FAILURES": "2", "BACKOFF_SECONDS": "2",
                        "PRICES": "extract=5,classify=3,translate=4,summarize=2", "CURRENCY": "usd"}.items():
        monkeypatch.setenv(f"JOBMETER_PAYG_{name}", value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
async def front(settings: Settings) -> AsyncIterator[PaygFakeStripeFront]:
    async with payg_fake_stripe_front(settings.stripe_api_base) as f:
        yield f


def with_front(settings: Settings, front: PaygFakeStripeFront) -> Settings:
    return settings.model_copy(update={"stripe_api_base": front.url, "jobmeter_payg_poll_seconds": 0.1})


def job(account: str, job_id: str, api: str = "extract", channel: str = "direct") -> JobCompleted:
    return JobCompleted(account_id=account, api=api, job_id=job_id, channel=channel, mode="sync",
                        completed_at=datetime.now(UTC))


def stripe_event(kind: str, obj: dict[str, Any], *, event_id: str | None = None) -> StripeEventReceived:
    return StripeEventReceived(
        stripe_event_id=event_id or f"evt_{secrets.token_hex(8)}", type=kind, created=datetime.now(UTC),
        customer_id=obj.get("customer"), data_object=obj,
    )


def checkout_completed(account: str, session: str, amount: int, *, event_id: str | None = None,
                       kind: str = "checkout.session.completed") -> StripeEventReceived:
    obj = {"id": session, "object": "checkout.session", "mode": "payment", "payment_status": "paid",
           "amount_total": amount, "currency": "usd", "metadata": {"account_id": account}}
    return stripe_event(kind, obj, event_id=event_id)


def our_topup(account: str, session: str, amount: int) -> StripeEventReceived:
    """A completed top-up Checkout that `jobmeter payg topup` opened (metadata.purpose = payg_topup)."""
    event = checkout_completed(account, session, amount)
    metadata = {"account_id": account, "purpose": "payg_topup"}
    return event.model_copy(update={"data_object": {**event.data_object, "metadata": metadata}})


def intent_succeeded(recharge: dict[str, Any], *, event_id: str | None = None) -> StripeEventReceived:
    obj = {"id": recharge["payment_intent_id"], "object": "payment_intent", "status": "succeeded",
           "amount": recharge["amount_minor"], "amount_received": recharge["amount_minor"], "currency": "usd",
           "metadata": {"account_id": "ignored-we-trust-the-recharge-row", "recharge_id": recharge["recharge_id"]}}
    return stripe_event("payment_intent.succeeded", obj, event_id=event_id)


def form_of(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode()))


async def publish(app: Any, *events: Event) -> None:
    await app.state.runtime.res.publisher.publish_many(list(events))


async def register(client: httpx.AsyncClient, account: str, customer: str | None = None) -> None:
    body = {"account_id": account, "model": "payg", "stripe_customer_id": customer}
    response = await client.post("/v1/accounts", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text


async def balance(client: httpx.AsyncClient, account: str) -> dict[str, Any]:
    response = await client.get(f"/v1/accounts/{account}/balance", headers=ADMIN)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def balance_is(client: httpx.AsyncClient, account: str, minor: int) -> dict[str, Any]:
    return await eventually(lambda: balance(client, account), lambda b: b["balance_minor"] == minor)


async def emitted(settings: Settings, event_type: str) -> list[Any]:
    rows = await fetchval(
        settings,
        "SELECT coalesce(json_agg(envelope ORDER BY id), '[]') FROM payg.outbox WHERE envelope::json->>'type' = $1",
        event_type,
    )
    return [REGISTRY.decode(e.encode())[1] for e in json.loads(rows)]


async def test_debits_are_exact_under_duplicates_and_a_consumer_restart(settings: Settings) -> None:
    app = create_app(settings, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        await register(client, "acme")
        await register(client, "other")  # billed otherwise: its jobs never touch a balance
        await client.post("/v1/accounts", json={"account_id": "subs", "model": "subscription"}, headers=ADMIN)
        jobs = [job("acme", f"j{i}", api) for i, api in enumerate(["extract"] * 4 + ["classify"] * 3 + ["translate"] * 2
                                                                  + ["summarize"])]
        expected = -sum(PRICES[j.api] for j in jobs)  # 39
        # Published twice each, in one go and again later, bypassing the ingest's own dedupe.
        await publish(app, *jobs, *jobs[:5], job("subs", "s1"), job("acme", "r1", channel="rapidapi"))
        await publish(app, *jobs[3:])
        shown = await balance_is(client, "acme", expected)
        assert (shown["currency"], shown["recharge_in_flight"]) == ("usd", False)
        # A top-up we opened, for an account that is not PAYG: never silently dropped, dead-lettered with why.
        await publish(app, our_topup("subs", "cs_test_stray", 700))
        [letter] = await read_topic(settings, Topics(settings.jobmeter_topic_prefix).deadletters, expect=1)
        dead = REGISTRY.decode(letter.value)[1]
        assert isinstance(dead, DeadLettered), dead
        assert "cs_test_stray" in dead.reason and "not a PAYG account" in dead.reason, dead.reason
        # Unknown accounts and accounts billed otherwise are refused clearly.
        assert (await client.get("/v1/accounts/subs/balance", headers=ADMIN)).status_code == 409
        assert (await client.get("/v1/accounts/nobody/balance", headers=ADMIN)).status_code == 404

    # A new process: the consumer resumes from its stored positions; old jobs published again are no debit.
    link = "https://buy.stripe.com/test_payg"
    app = create_app(settings.model_copy(update={"next_public_stripe_payment_link_payg": link}),
                     consumers=["accounts", "payg"])
    async with client_for(app) as client:
        topup = await client.post("/v1/accounts/acme/payg/topup", headers=ADMIN)
        assert topup.status_code == 201, topup.text
        assert topup.json()["url"] == f"{link}?client_reference_id=acme"
        bad = await client.post("/v1/accounts/acme/payg/topup", json={"amount_minor": 0}, headers=ADMIN)
        assert bad.status_code == 422
        no_card = await client.post("/v1/accounts/acme/payg/config", json={"auto_recharge": True}, headers=ADMIN)
        assert no_card.status_code == 422 and "saved card" in no_card.json()["detail"]
        await publish(app, *jobs, job("acme", "late-1", "classify"), job("acme", "late-2", "classify"))
        response = await client.post("/v1/jobs/completed", headers=INGEST, json=[
            {**jobs[0].model_dump(mode="json")}, {**job("acme", "http-1", "summarize").model_dump(mode="json")}])
        assert response.status_code == 202, response.text
        await balance_is(client, "acme", expected - 6 - 2)

    assert await fetchval(settings, "SELECT count(*) FROM payg.movements WHERE account_id = 'acme'") == 13
    assert await fetchval(settings, "SELECT count(*) FROM payg.movements WHERE account_id <> 'acme'") == 0
    debited = await emitted(settings, "BalanceDebited")
    assert sum(e.amount_minor for e in debited) == -(expected - 8)
    every_job = sorted([*(f"j{i}" for i in range(10)), "http-1", "late-1", "late-2"])
    assert sorted(job.job_id for e in debited for job in e.jobs) == every_job  # each in one event, duplicates or not
    # Below zero by more than the allowance (50)? Not yet at -47: the keys still work.
    assert await emitted(settings, "KeySuspended") == []


async def parked(settings: Settings) -> int:
    return int(await fetchval(settings, "SELECT count(*) FROM payg.parked_jobs"))


async def test_a_job_that_arrives_before_its_account_waits_and_is_debited_once_it_is_registered(
    settings: Settings,
) -> None:
    app = create_app(settings, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        early = [job("early", "e1"), job("early", "e2", "classify"), job("sub-early", "s1")]
        await publish(app, *early, job("early", "r1", channel="rapidapi"))  # RapidAPI bills its own: not parked
        await eventually(lambda: parked(settings), lambda n: n == 3)
        await register(client, "early", "cus_early")
        response = await client.post("/v1/accounts", json={"account_id": "sub-early", "model": "subscription"},
                                     headers=ADMIN)
        assert response.status_code == 201, response.text
        await balance_is(client, "early", -8)
        await eventually(lambda: parked(settings), lambda n: n == 0)  # debited, or dropped as billed otherwise
        await publish(app, *early, job("early", "e3"))  # the early ones again: no second debit
        shown = await balance_is(client, "early", -13)
        assert shown["currency"] == "usd"
    assert await fetchval(settings, "SELECT count(*) FROM payg.movements WHERE account_id = 'early'") == 3
    assert await fetchval(settings, "SELECT count(*) FROM payg.movements WHERE account_id = 'sub-early'") == 0
    assert await fetchval(settings, "SELECT customer_id FROM payg.balances WHERE account_id = 'early'") == "cus_early"
    assert sorted(job.job_id for e in await emitted(settings, "BalanceDebited") for job in e.jobs) == ["e1", "e2", "e3"]


async def test_a_top_up_folded_before_its_account_waits_and_is_credited_once_registered(settings: Settings) -> None:
    app = create_app(settings, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        await publish(app, our_topup("late-payg", "cs_test_late", 700), our_topup("late-sub", "cs_test_odd", 500))
        topups = "SELECT count(*) FROM payg.parked_topups"
        await eventually(lambda: fetchval(settings, topups), lambda n: n == 2)
        await register(client, "late-payg")
        response = await client.post("/v1/accounts", json={"account_id": "late-sub", "model": "subscription"},
                                     headers=ADMIN)
        assert response.status_code == 201, response.text
        await balance_is(client, "late-payg", 700)
        # Ours, for an account billed otherwise: kept, refused, for an operator; never credited anywhere.
        refused = f"{topups} WHERE refused_at IS NOT NULL AND account_id = 'late-sub'"
        await eventually(lambda: fetchval(settings, refused), lambda n: n == 1)
        assert await fetchval(settings, topups) == 1
        # The completion delivered again (a new Stripe event for the same session), then a job: one credit.
        await publish(app, our_topup("late-payg", "cs_test_late", 700), job("late-payg", "after-1"))
        await balance_is(client, "late-payg", 695)
    assert await fetchval(settings, "SELECT count(*) FROM payg.movements WHERE kind = 'topup'") == 1


async def test_a_burst_across_the_threshold_charges_the_card_once_and_webhooks_credit_once(
    settings: Settings, front: PaygFakeStripeFront
) -> None:
    s = with_front(settings, front)
    app = create_app(s, consumers=["accounts", "payg"])
    async with client_for(app) as client:
        await register(client, "burst", "cus_BURST")
        # A top-up through Checkout: the same webhook delivered twice, and its async twin, credit once.
        topup = await client.post("/v1/accounts/burst/payg/topup", json={"amount_minor": 300}, headers=ADMIN)
        assert topup.status_code == 201, topup.text
        session = topup.json()["checkout_session_id"]
        form = form_of(front.seen[-1].body)
        assert (form["mode"], form["payment_intent_data[setup_future_usage]"]) == ("payment", "off_session")
        assert (form["metadata[account_id]"], form["line_items[0][price_data][unit_amount]"]) == ("burst", "300")
        done = checkout_completed("burst", session, 300, event_id="evt_topup1")
        await publish(app, done, done, checkout_completed("burst", session, 300,
                                                         kind="checkout.session.async_payment_succeeded"))
        await balance_is(client, "burst", 300)

        configured = await client.post("/v1/accounts/burst/payg/config", headers=ADMIN, json={
            "threshold_minor": 100, "recharge_minor": 2000, "auto_recharge": True, "payment_method_id": "pm_card_visa"})
        assert configured.status_code == 202, configured.text
        await eventually(lambda: balance(client, "burst"), lambda b: b["auto_recharge"])

        # 60 jobs of 5 in one batch: the balance crosses 100 at the 41st and ends at 0.
        burst = [job("burst", f"b{i}").model_dump(mode="json") for i in range(60)]
        assert (await client.post("/v1/jobs/completed", json=burst, headers=INGEST)).status_code == 202
        await publish(app, *[job("burst", f"more{i}") for i in range(10)])  # more while one is in flight
        shown = await balance_is(client, "burst", -50)
        [recharge] = (await eventually(
            lambda: balance(client, "burst"), lambda b: b["recharges"] and b["recharges"][0]["payment_intent_id"]
        ))["recharges"]
        # Every job is folded (the balance) and the one recharge they asked for is recorded as sent: a further pass
        # of the recharger, run here beside the app's own, finds nothing left to charge, so no request can follow.
        assert (await payg_recharger.recharger_for(app.state.runtime.res).charge_due()).claimed == 0
        intents = front.payment_intents()
        assert len(intents) == 1
        assert intents[0].idempotency_key == f"{recharge['recharge_id']}:1" == recharge["idempotency_key"]
        assert form_of(intents[0].body) == {
            "customer": "cus_BURST", "payment_method": "pm_card_visa", "amount": "2000", "currency": "usd",
            "off_session": "true", "confirm": "true", "metadata[account_id]": "burst",
            "metadata[recharge_id]": recharge["recharge_id"],
        }
        assert shown["recharge_in_flight"] is True

        # Stripe reports success, more than once and under two event ids: credited once.
        ok = intent_succeeded(recharge, event_id="evt_pi_ok")
        await publish(app, ok, ok, intent_succeeded(recharge))
        settled = await balance_is(client, "burst", 1950)
        assert settled["recharge_in_flight"] is False
        assert settled["recharges"][0]["state"] == "succeeded"
    assert len(await emitted(settings, "BalanceCredited")) == 2
    assert len(await emitted(settings, "RechargeRequested")) == 1
    assert len(await emitted(settings, "RechargeSucceeded")) == 1


async def test_declines_notify_back_off_turn_auto_off_and_exhaustion_suspends_keys_until_credit(
    settings: Settings, front: PaygFakeStripeFront
) -> None:
    front.decline = "card_declined"
    s = with_front(settings, front)
    app = create_app(s, consumers=["accounts", "payg", "keys"])  # the key store folds our key events
    async with client_for(app) as client:
        await register(client, "decl", "cus_DECL")
        configured = await client.post("/v1/accounts/decl/payg/config", headers=ADMIN, json={
            "threshold_minor": 100, "recharge_minor": 1000, "auto_recharge": True, "payment_method_id": "pm_card_visa"})
        assert configured.status_code == 202
        first = await eventually(lambda: balance(client, "decl"), lambda b: b["failures"] == 1)
        assert first["auto_recharge"] is True and first["backoff_until"] is not None
        assert first["recharges"][0]["state"] == "failed"
        assert first["recharges"][0]["failure_code"] == "card_declined"
        # The customer is told, with a link to pay on-session (a Checkout Session stripe-mock made).
        url = await eventually(
            lambda: fetchval(s, "SELECT pay_url FROM payg.notifications WHERE sent_at IS NOT NULL"), lambda u: u
        )
        assert url.startswith("https://checkout.stripe.com/")
        # Backing off: a job now requests nothing.
        await publish(app, job("decl", "d0"))
        await balance_is(client, "decl", -5)
        assert len(front.payment_intents()) == 1

        await asyncio.sleep(2.2)  # the back-off is over: the next job asks again, and the bank wants the customer
        front.decline = "authentication_required"
        await publish(app, job("decl", "d1"))
        second = await eventually(lambda: balance(client, "decl"), lambda b: b["failures"] == 2)
        assert second["auto_recharge"] is False  # two failures in a row: off
        assert second["recharges"][0]["failure_code"] == "authentication_required"
        await publish(app, *[job("decl", f"x{i}") for i in range(8)])  # -50: at the allowance, keys still work
        await balance_is(client, "decl", -50)
        assert (await balance(client, "decl"))["keys_suspended"] is False
        await publish(app, job("decl", "over", "summarize"))  # -52: exhausted
        await eventually(lambda: balance(client, "decl"), lambda b: b["keys_suspended"])
        suspended = "SELECT suspended FROM keys.suspensions WHERE account_id = 'decl'"
        await eventually(lambda: fetchval(s, suspended), lambda v: v is True)
        assert len(front.payment_intents()) == 2  # auto-recharge is off: no more charges

        await publish(app, checkout_completed("decl", "cs_test_decl1", 1000))  # the customer pays on-session
        back = await eventually(lambda: balance(client, "decl"), lambda b: not b["keys_suspended"])
        assert back["balance_minor"] == 948
        await eventually(lambda: fetchval(s, suspended), lambda v: v is False)
        await eventually(lambda: fetchval(s, "SELECT count(*) FROM payg.outbox WHERE sent_at IS NULL"),
                         lambda n: n == 0)

    assert await fetchval(s, "SELECT count(*) FROM payg.notifications WHERE sent_at IS NOT NULL") == 2
    off = await emitted(s, "AutoRechargeDisabled")
    assert [(e.account_id, e.failures) for e in off] == [("decl", 2)]
    assert len(await emitted(s, "RechargeFailed")) == 2
    keys = Topics(s.jobmeter_topic_prefix).name("keys")
    records = [REGISTRY.decode(r.value)[1] for r in await read_topic(s, keys, expect=2)]
    assert [(type(e), e.reason, e.sequence) for e in records if isinstance(e, KeySuspended | KeyRestored)] == [
        (KeySuspended, "payg_exhausted", 1), (KeyRestored, "payg_credit", 2)]
