"""The key lifecycle decides from the log alone: it keeps its own view of the accounts (folded from the accounts
topic) and never reads the registry's tables, so a customer decided on before its account's link is linked
later, and a replay into fresh tables gives the same state, on the real stack."""

from __future__ import annotations

import time
from typing import Any

import pytest

from events.accounts import AccountRegistered, StripeCustomerLinked
from events.envelope import Event
from events.stripe import StripeEventReceived
from jobmeter.settings import Settings
from projections import replay
from services.engine.runtime import Runtime, build_runtime
from services.stripe_adapter.fixtures import build_event, encode_event
from services.stripe_adapter.webhooks import parse
from tests.integration.helpers import eventually, fetchval

pytestmark = pytest.mark.integration

LIFECYCLE = "key-lifecycle"


def stripe(event_type: str, customer: str, *, ago: int, **options: Any) -> StripeEventReceived:
    """A Stripe event as the webhook bridge publishes it for a customer it knew no account of."""
    return parse(encode_event(build_event(event_type, customer, created=int(time.time()) - ago, **options)))


async def publish(runtime: Runtime, *events: Event) -> None:
    await runtime.res.publisher.publish_many(list(events))


async def row(settings: Settings, sql: str, *args: Any) -> Any:
    return await eventually(lambda: fetchval(settings, sql, *args), lambda v: v is not None)


CUSTOMER = "SELECT standing || ':' || coalesce(account_id, '-') FROM key_lifecycle.customers WHERE customer_id = $1"
SUSPENSION = "SELECT suspended::text || ':' || cause FROM keys.suspensions WHERE account_id = $1"


async def test_the_fold_reads_no_registry_table_links_late_accounts_and_replays_the_same(settings: Settings) -> None:
    async with build_runtime(settings, ["keys", LIFECYCLE]).running(producer="test") as runtime:
        # No accounts consumer runs here; with its table gone, any read of it would fail the fold.
        await fetchval(settings, "ALTER TABLE accounts.accounts RENAME TO not_for_other_folds")

        # Stripe gives up on cus_EARLY before anyone linked it to an account: no account, no keys to change yet.
        await publish(runtime, stripe("invoice.payment_failed", "cus_EARLY", final=True, ago=60))
        await eventually(lambda: fetchval(settings, CUSTOMER, "cus_EARLY"), lambda v: v == "suspended:-")
        # cus_LATER is only past due when its link arrives: linking it suspends nothing.
        await publish(runtime, stripe("customer.subscription.updated", "cus_LATER", status="past_due", ago=60))
        await eventually(lambda: fetchval(settings, CUSTOMER, "cus_LATER"), lambda v: v == "past_due:-")

        # The link arrives: the customer's row takes the account, and the account's keys are suspended.
        await publish(
            runtime,
            AccountRegistered(account_id="early", model="subscription", stripe_customer_id="cus_EARLY"),
            AccountRegistered(account_id="later", model="subscription"),
            StripeCustomerLinked(account_id="later", stripe_customer_id="cus_LATER"),
            AccountRegistered(account_id="known", model="subscription", stripe_customer_id="cus_KNOWN"),
        )
        await eventually(lambda: fetchval(settings, CUSTOMER, "cus_EARLY"), lambda v: v == "suspended:early")
        assert await row(settings, SUSPENSION, "early") == "true:linked:cus_EARLY"
        await eventually(lambda: fetchval(settings, CUSTOMER, "cus_LATER"), lambda v: v == "past_due:later")

        # A customer whose link the lifecycle already holds is resolved from its own view.
        known = "SELECT account_id FROM key_lifecycle.accounts WHERE customer_id = 'cus_KNOWN'"
        assert await row(settings, known) == "known"
        failed = stripe("invoice.payment_failed", "cus_KNOWN", final=True, ago=30)
        await publish(runtime, failed)
        assert await row(settings, SUSPENSION, "known") == f"true:{failed.stripe_event_id}"
        assert await fetchval(settings, "SELECT count(*) FROM keys.suspensions WHERE account_id = 'later'") == 0

        kinds = "SELECT string_agg(account_id || ':' || kind, ',' ORDER BY account_id) FROM key_lifecycle.notifications"
        assert await fetchval(settings, kinds) == "early:suspended,known:suspended"

    result = await replay.rebuild(settings, LIFECYCLE)
    assert (result.partial, result.dead) == (False, 0)
    assert await replay.verify(settings, LIFECYCLE) == []
    rebuilt = "SELECT string_agg(customer_id || '=' || coalesce(account_id, '-'), ',' ORDER BY customer_id) FROM {}"
    assert await fetchval(settings, rebuilt.format("key_lifecycle__rebuild.customers")) == (
        "cus_EARLY=early,cus_KNOWN=known,cus_LATER=later"
    )
