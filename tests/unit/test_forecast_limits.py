"""The forecast alert's pure decision beyond the included jobs and the cap on all jobs: a cap on one API surface's
jobs against that surface's own forecast, and a spend cap (all surfaces or one) against what the forecast jobs
cost, priced as the account pays (PAYG prices, a subscription's overage, nothing when billed elsewhere); once per
(account, period, limit kind, scope), and v1 events (from before spend caps were forecast) still read."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from events.codec import encode
from events.envelope import Envelope
from events.registry import REGISTRY
from events.usage import UsageForecastExceeded
from projections.caps.rules import ALL, Cap
from projections.ledger.forecast_terms import PayAsYouGo, Subscription, Unpriced, spend
from services.accounts.profiles import recipient
from services.ledger.forecast_limits import MIN_HISTORY, forecast_alerts
from services.webhooks.alert_mail import spend_currency, text_of

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
NOW = START + timedelta(days=10)  # ten whole days seen
PAYG = PayAsYouGo({"extract": 10, "ocr": 2}, "eur")


def daily(per_day: int, days: int = 10) -> dict[date, int]:
    return {(START + timedelta(days=d)).date(): per_day for d in range(days)}


# 10 extract jobs a day and 50 ocr jobs a day for ten days: 600 jobs, spent 100 x 10 + 500 x 2 = 2000 minor units.
DAYS = {"extract": daily(10), "ocr": daily(50)}


def document(jobs: int = 600, forecast: int = 1800, high: int = 1900) -> dict[str, Any]:
    return {"jobs_to_date": jobs, "forecast_jobs": forecast, "forecast_low": jobs, "forecast_high": high,
            "included_jobs": None, "cap_reached_on": None}


def alerts(caps: list[Cap], terms: Any = PAYG, now: datetime = NOW, **doc: int) -> list[UsageForecastExceeded]:
    return forecast_alerts("acme", START, END, document(**doc), None, now, caps=caps, daily_by_api=DAYS,
                           terms=terms)


def test_a_spend_cap_the_forecast_spend_passes_is_an_alert_with_the_spend_and_its_currency() -> None:
    [found] = alerts([Cap(ALL, 10**6, spend_minor=5000)])
    # The period's mix kept: 2000 spent on 600 jobs, so 1800 jobs cost 6000.
    assert (found.limit_kind, found.api, found.limit) == ("spend_cap", None, 5000)
    assert (found.spend_to_date, found.forecast_spend, found.currency) == (2000, 6000, "eur")
    assert (found.jobs_to_date, found.forecast_jobs, found.forecast_high) == (600, 1800, 1900)
    assert alerts([Cap(ALL, 10**6, spend_minor=7000)]) == []  # the forecast stays under it
    assert alerts([Cap(ALL, 10**6, spend_minor=1500)]) == []  # already past it: the caps fold's own alert


def test_a_spend_cap_on_one_surface_counts_that_surfaces_spend_and_jobs() -> None:
    [found] = alerts([Cap("extract", 10**6, spend_minor=2000)])
    # extract: 100 jobs so far at 10 = 1000, a third of the jobs: 600 of the 1800 forecast, costing 3000.
    assert (found.api, found.spend_to_date, found.forecast_spend) == ("extract", 1000, 3000)
    assert (found.jobs_to_date, found.forecast_jobs) == (100, 300)
    assert alerts([Cap("ocr", 10**6, spend_minor=3500)]) == []  # ocr: 1000 so far, 3000 forecast
    assert spend(PAYG, 600, {"extract": 100, "ocr": 500}, "ocr") == 1000


def test_a_subscription_prices_the_overage_past_its_plan_in_the_catalogs_terms() -> None:
    plan = Subscription(START, END, 1000, Decimal("0.5"), "usd")
    # 600 of 1000 included so far: nothing spent; 1800 forecast: 800 over at 0.5 = 400.
    [found] = alerts([Cap(ALL, 10**6, spend_minor=300)], terms=plan)
    assert (found.spend_to_date, found.forecast_spend, found.currency) == (0, 400, "usd")
    assert alerts([Cap(ALL, 10**6, spend_minor=500)], terms=plan) == []
    # One surface's share of the overage is in proportion to its jobs (extract: a sixth), as the caps fold counts.
    [surface] = alerts([Cap("extract", 10**6, spend_minor=50)], terms=plan)
    assert (surface.api, surface.forecast_spend) == ("extract", 400 * 100 // 600)


def test_no_spend_alert_for_jobs_not_priced_here() -> None:
    assert alerts([Cap(ALL, 10**6, spend_minor=1)], terms=Unpriced()) == []
    assert alerts([Cap(ALL, 10**6, spend_minor=1)], terms=None) == []


def test_a_cap_on_one_surface_is_forecast_from_that_surfaces_own_days() -> None:
    # extract runs 10 a day: about 300 in the period. ocr runs 50 a day: about 1500.
    [found] = alerts([Cap("extract", 200), Cap("ocr", 2000)])
    assert (found.limit_kind, found.api, found.limit, found.jobs_to_date) == ("cap", "extract", 200, 100)
    assert 250 <= found.forecast_jobs <= 350 and found.forecast_high >= found.forecast_jobs
    assert found.reached_on is not None and START.date() < found.reached_on < END.date()
    assert found.spend_to_date is None and found.currency is None
    assert alerts([Cap("extract", 90)]) == []  # reached already
    assert alerts([Cap("rotate", 5)]) == []  # a surface with no jobs forecasts none


def test_each_limit_is_its_own_alert_and_the_same_one_on_a_later_look() -> None:
    caps = [Cap(ALL, 1500, spend_minor=5000), Cap("extract", 200, spend_minor=2000)]
    found = forecast_alerts("acme", START, END, document(), 1500, NOW, caps=caps, daily_by_api=DAYS, terms=PAYG)
    kinds = [(f.limit_kind, f.api) for f in found]
    assert kinds == [("cap", None), ("cap", "extract"), ("spend_cap", None), ("spend_cap", "extract")]
    assert len({f.natural_id() for f in found}) == 4
    later = forecast_alerts("acme", START, END, document(700, 1900, 2000), 1500, NOW + timedelta(days=1),
                            caps=caps, daily_by_api=DAYS, terms=PAYG)
    assert {f.natural_id() for f in later} == {f.natural_id() for f in found}


def test_too_early_in_the_period_nothing_is_forecast_to_pass() -> None:
    assert alerts([Cap("extract", 200, spend_minor=1100)], now=START + MIN_HISTORY - timedelta(minutes=1)) == []


def test_a_v1_forecast_alert_still_reads_as_the_same_alert() -> None:
    data = {"account_id": "acme", "period_start": START.isoformat(), "period_end": END.isoformat(),
            "limit_kind": "cap", "api": None, "limit": 500, "jobs_to_date": 200, "forecast_jobs": 700,
            "forecast_high": 800, "reached_on": "2026-11-20", "forecast_at": NOW.isoformat()}
    old = Envelope(event_id=uuid.uuid4(), type="UsageForecastExceeded", version=1, occurred_at=NOW, producer="old",
                   data=data)
    _, event = REGISTRY.decode(encode(old))
    assert isinstance(event, UsageForecastExceeded) and UsageForecastExceeded.version == 2
    assert (event.spend_to_date, event.forecast_spend, event.currency) == (None, None, None)
    now = UsageForecastExceeded(account_id="acme", period_start=START, period_end=END, limit_kind="cap", limit=500,
                                jobs_to_date=300, forecast_jobs=900, forecast_high=950, forecast_at=NOW)
    assert event.natural_id() == now.natural_id()


def test_the_spend_forecast_mail_names_the_spend_in_its_currency() -> None:
    [found] = alerts([Cap(ALL, 10**6, spend_minor=5000)])
    subject, body = text_of("usage.forecast_exceeded", "acme", found.model_dump(mode="json"), "usd")
    assert subject == "Account acme: forecast to exceed your spend cap of 50.00 EUR"
    assert "spend about 60.00 EUR" in body and "spent 20.00 EUR so far (600 jobs)" in body


def test_a_spend_cap_counts_in_the_currency_of_how_the_account_pays() -> None:
    assert spend_currency("subscription", "eur") == "usd"  # the Stripe catalog's: the overage is priced there
    assert spend_currency("payg", "eur") == "eur"
    assert spend_currency(None, "eur") == "eur"  # unknown to the registry: the PAYG prices, as the caps fold


def test_a_notice_goes_to_the_invoices_address_else_the_contact_else_the_inbox() -> None:
    assert recipient("pay@acme.example", "ops@acme.example", "billing@jobmeter.test") == "pay@acme.example"
    assert recipient(None, "ops@acme.example", "billing@jobmeter.test") == "ops@acme.example"
    assert recipient(None, None, "billing@jobmeter.test") == "billing@jobmeter.test"
