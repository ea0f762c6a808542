"""Dunning per invoice and paused subscriptions on the real stack: signed, Stripe-shaped webhooks through the
bridge, observed at the key check and in the lifecycle's own tables."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from jobmeter.settings import Settings
from projections.key_lifecycle import store
from projections.key_lifecycle.dunning import decide
from projections.key_lifecycle.invoices import Invoice
from projections.migrate import migrate
from services.http.app import create_app
from services.stripe_adapter.fixtures import build_event, encode_event
from services.stripe_adapter.webhooks import parse
from tests.integration.helpers import applied_to_end, client_for, fetchval
from tests.integration.test_key_lifecycle import check, new_key, register, signed_post, until_status

pytestmark = pytest.mark.integration

CONSUMERS = ["accounts", "keys", "key-lifecycle"]
OUTBOX = "SELECT count(*) FROM key_lifecycle.outbox"
STANDING = "SELECT standing FROM key_lifecycle.customers WHERE customer_id = $1"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


async def test_paying_a_later_invoice_keeps_keys_suspended_while_an_earlier_failed_for_good(
    settings: Settings,
) -> None:
    now = int(time.time())
    async with client_for(create_app(settings, consumers=CONSUMERS)) as client:
        await register(client, "owes", "cus_OWES")
        key = (await new_key(client, "owes"))["key"]
        await until_status(client, key, 200)

        await signed_post(client, build_event("invoice.payment_failed", "cus_OWES", final=True, created=now - 60,
                                              invoice_id="in_EARLIER"))
        await until_status(client, key, 403)

        # The next period's invoice is paid, and Stripe turns the subscription active again (its status follows
        # the latest invoice); the earlier invoice is still open: keys stay suspended.
        await signed_post(client, build_event("invoice.paid", "cus_OWES", created=now - 50, invoice_id="in_LATER"))
        await signed_post(client, build_event("customer.subscription.updated", "cus_OWES", status="active",
                                              created=now - 40))
        await applied_to_end(settings, "key_lifecycle", "stripe")
        # Decided on, and no restoration queued: the fold writes its outbox in the transaction that moves it.
        assert await fetchval(settings, OUTBOX) == 1
        assert await fetchval(settings, STANDING, "cus_OWES") == "suspended"
        denied = await check(client, key)
        assert denied.status_code == 403 and "in_EARLIER" in denied.json()["reason"]

        await signed_post(client, build_event("invoice.paid", "cus_OWES", created=now - 30, invoice_id="in_EARLIER"))
        await until_status(client, key, 200)
        assert await fetchval(settings, OUTBOX) == 2


async def test_a_paused_subscription_suspends_keys_and_resuming_restores_them(settings: Settings) -> None:
    now = int(time.time())
    async with client_for(create_app(settings, consumers=CONSUMERS)) as client:
        await register(client, "trial", "cus_TRIAL")
        key = (await new_key(client, "trial"))["key"]
        await until_status(client, key, 200)

        paused = build_event("customer.subscription.paused", "cus_TRIAL", created=now - 60)
        await signed_post(client, paused)
        await until_status(client, key, 403)
        assert "is paused" in (await check(client, key)).json()["reason"]

        await signed_post(client, build_event("customer.subscription.resumed", "cus_TRIAL", created=now - 30))
        await until_status(client, key, 200)

        await signed_post(client, paused)  # Stripe delivers the pause again, late: it is older than the resume
        await applied_to_end(settings, "key_lifecycle", "stripe")
        assert await fetchval(settings, STANDING, "cus_TRIAL") == "good"
        assert await fetchval(settings, OUTBOX) == 2
        assert (await check(client, key)).status_code == 200


async def test_rows_stored_before_invoices_were_remembered_still_load(settings: Settings, tmp_path: Path) -> None:
    """A customer row of the old shape (paid invoice ids only) gets the new column by migration, its paid invoices
    as invoice facts, and folds on as before: a late failure of a paid invoice changes nothing."""
    migrations = Path(store.__file__).parent / "migrations"
    for old in ("key_lifecycle_0001_customers.sql", "key_lifecycle_0002_accounts.sql"):
        shutil.copy(migrations / old, tmp_path / old)
    await migrate(settings.database_url, "kl_old_shape", tmp_path)
    await fetchval(settings, """INSERT INTO kl_old_shape.customers (customer_id, standing, decided_at, decided_ids,
                                decided_reason, clock, paid_invoices, decisions, updated_at)
                                VALUES ('cus_OLD', 'good', $1, '{evt_paid}', 'invoice in_OLD paid', $1, '{in_OLD}', 2,
                                $1)""", T0)
    await migrate(settings.database_url, "kl_old_shape", migrations)

    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL search_path TO kl_old_shape")
            row = await store.customer(conn, "cus_OLD")
            assert row is not None and row.state.invoices == (Invoice("in_OLD", "paid", T0),)
            late = parse(encode_event(build_event("invoice.payment_failed", "cus_OLD", final=True, invoice_id="in_OLD",
                                                  created=int(T0.timestamp()) - 60)))
            after, actions = decide(row.state, late)
            assert (after.standing, actions) == ("good", [])
            await store.save_customer(conn, "cus_OLD", None, after, row.decisions, T0)
            again = await store.customer(conn, "cus_OLD")
            assert again is not None and again.state == after
            assert await conn.fetchval("SELECT paid_invoices FROM customers") == ["in_OLD"]
    finally:
        await conn.execute("DROP SCHEMA kl_old_shape CASCADE")
        await conn.close()
