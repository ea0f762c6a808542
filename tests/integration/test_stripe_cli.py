"""`jobmeter stripe` against stripe-mock and the real Postgres: catalog sync, reports, reconciliation."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from jobmeter.settings import Settings
from projections.meter.reconcile import our_figures, reconcile
from projections.meter.windows import window_start
from services.devtools.sandbox import service_env
from services.stripe_adapter.catalog import sync_catalog
from services.stripe_adapter.client import event_summaries, make_client
from tests.integration.meter_harness import CUSTOMER, WIDTH, Harness, jobs, open_harness

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    async with open_harness(settings) as h:
        yield h


def jobmeter(settings: Settings, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**service_env(settings), **(env or {})}
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], capture_output=True, text=True,
                          env=environment, cwd=ROOT, timeout=90, check=False)


async def test_sync_creates_the_catalog_with_idempotency_keys_and_checks_given_ids(harness: Harness) -> None:
    h = harness
    client = make_client(h.settings, api_base=h.front.url)
    items = sync_catalog(client, h.settings)
    assert [(i.name, i.action) for i in items] == [
        ("meter", "created"), ("pro_monthly", "created"), ("pro_annual", "created"), ("overage", "created"),
        ("payg_topup", "created"),
    ]
    assert all(i.id for i in items)
    posts = [r for r in h.front.seen if r.method == "POST"]
    assert [r.idempotency_key for r in posts] == [
        "jobmeter-catalog-meter-jobmeter_jobs", "jobmeter-catalog-jobmeter_pro_monthly",
        "jobmeter-catalog-jobmeter_pro_annual", "jobmeter-catalog-jobmeter_overage",
        "jobmeter-catalog-jobmeter_payg_topup",
    ]
    overage = posts[3].form
    assert overage["recurring[meter]"] == items[0].id
    assert (overage["tiers[0][up_to]"], overage["tiers[0][unit_amount]"]) == ("10000", "0")
    assert overage["tiers_mode"] == "graduated"

    given = h.settings.model_copy(update={"stripe_meter_id": "mtr_given", "stripe_pro_price_id": "price_given"})
    before = len(h.front.seen)
    checked = sync_catalog(client, given)
    calls = [(r.method, r.path) for r in h.front.seen[before:]]
    assert ("GET", "/v1/billing/meters/mtr_given") in calls and ("GET", "/v1/prices/price_given") in calls
    assert ("POST", "/v1/billing/meters") not in calls  # given IDs are checked, never duplicated
    assert (checked[0].id, checked[0].action) == ("mtr_given", "checked")
    assert (checked[1].id, checked[1].action, checked[1].problems) == ("price_given", "checked", [])
    # stripe-mock answers with its fixture meter, whose event name is not ours: the check says so.
    assert any("event_name" in p for p in checked[0].problems)


async def test_reconcile_compares_the_ledger_the_outbox_and_stripe(harness: Harness) -> None:
    h = harness
    at = h.now - timedelta(minutes=10)
    await h.publish(*jobs(6, at), *jobs(2, at, account="payg-acct", prefix="p"))
    await h.sender().send_due()
    start = window_start(at, 3600)
    end = start + timedelta(hours=1)

    async with h.pool.acquire() as conn:
        ours = await our_figures(conn, start, end)
    assert [(u.account_id, u.ledger, u.recorded, u.sent, u.unsent) for u in ours] == [("acme", 6, 6, 6, 0)]
    assert reconcile(ours)[0].ok

    client = make_client(h.settings, api_base=h.front.url)
    stripe_side = event_summaries(client, "mtr_123", CUSTOMER, start, end)
    [asked] = [r for r in h.front.seen if r.path.endswith("/event_summaries")]
    assert asked.path == "/v1/billing/meters/mtr_123/event_summaries"
    [result] = reconcile([replace(ours[0], stripe=stripe_side)])
    # stripe-mock answers a fixed summary (25), never what we sent: the difference is flagged, as it must be.
    assert stripe_side == 25
    assert result.differences == ["Stripe's meter shows 25 jobs, Stripe acknowledged 6 from us"]


async def test_reports_and_reconcile_on_the_command_line(harness: Harness) -> None:
    h = harness
    at = h.now - timedelta(minutes=10)
    await h.publish(*jobs(3, at))
    await h.sender().send_due()
    await h.publish(*jobs(1, at, prefix="late"))  # recorded, not yet sent

    shown = jobmeter(h.settings, "stripe", "reports", "--account", "acme", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    start = window_start(at, WIDTH)
    assert [(r["seq"], r["state"], r["value"]) for r in rows] == [(0, "sent", 3), (1, "pending", 1)]
    assert rows[0]["window_start"] == start.isoformat()
    assert rows[0]["identifier"] == f"{CUSTOMER}-{int(start.timestamp())}-60s-0"

    period = f"{at:%Y-%m-%dT%H}"
    checked = jobmeter(h.settings, "stripe", "reconcile", "--period", period, "--no-stripe", "--json")
    assert checked.returncode == 1, checked.stderr  # one job is not yet acknowledged by Stripe: flagged
    [acme] = json.loads(checked.stdout)
    assert (acme["ledger"], acme["sent"], acme["unsent"], acme["ok"]) == (4, 3, 1, False)

    with_stripe = jobmeter(h.settings, "stripe", "reconcile", "--period", period, "--json",
                           env={"STRIPE_METER_ID": "mtr_123"})
    assert with_stripe.returncode == 1, with_stripe.stderr
    assert json.loads(with_stripe.stdout)[0]["stripe"] == 25  # stripe-mock's fixture

    refused = jobmeter(h.settings, "stripe", "reconcile", "--period", "last week")
    assert refused.returncode == 2
