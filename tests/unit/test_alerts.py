"""Alerts that reach people, the pure parts: the contact address check, registrations from before it existed,
which alerts are emailed (a cap's 100 % is its `cap_reached`, once), what each mail says and to whom, and when a
forecast is an alert."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from events.accounts import AccountContactSet, AccountRegistered, ContactEmail
from events.codec import encode
from events.envelope import Envelope
from events.payg import BalanceLow, RechargeRequested
from events.registry import REGISTRY
from events.usage import UsageCapReached, UsageForecastExceeded, UsageThresholdCrossed
from projections.webhooks.types import WEBHOOK_TYPES, data_of, mailed, webhook_type
from services.ledger.forecast_limits import MIN_HISTORY, forecast_alerts
from services.webhooks.alert_mail import compose, text_of

START = datetime(2026, 11, 1, tzinfo=UTC)
EMAIL: TypeAdapter[str] = TypeAdapter(ContactEmail)
END = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("address", ["ops@acme.example", "first.last+billing@mail.acme.co.uk", "a_b-c@x-y.io"])
def test_plain_addresses_pass(address: str) -> None:
    assert EMAIL.validate_python(address) == address


def test_the_domain_is_lower_cased_and_the_local_part_kept() -> None:
    assert EMAIL.validate_python("Ops.Team@ACME.Example") == "Ops.Team@acme.example"


@pytest.mark.parametrize("address", [
    "", "acme.example", "a@b", "a@@b.io", "a@b@c.io", ".a@b.io", "a.@b.io", "a..b@c.io", "a b@c.io", "a@-b.io",
    "a@b-.io", "a@b..io", "a@1.2", '"quoted"@b.io', "a@b.io\nBcc: x@y.io", "a@" + "b" * 250 + ".io",
])
def test_anything_else_is_refused(address: str) -> None:
    with pytest.raises(ValidationError):
        EMAIL.validate_python(address)
    with pytest.raises(ValidationError):
        AccountContactSet(account_id="acme", contact_email=address, set_at=START)


def test_a_registration_from_before_contacts_still_decodes_and_the_id_is_the_accounts() -> None:
    old = Envelope(event_id=uuid.uuid4(), type="AccountRegistered", version=1, occurred_at=START, producer="old",
                   data={"account_id": "acme", "model": "payg", "stripe_customer_id": None, "display_name": None})
    _, event = REGISTRY.decode(encode(old))
    assert isinstance(event, AccountRegistered) and event.contact_email is None
    with_contact = AccountRegistered(account_id="acme", model="payg", contact_email="ops@acme.example")
    assert with_contact.natural_id() == AccountRegistered(account_id="acme", model="payg").natural_id()


def crossed(kind: str, percent: int) -> UsageThresholdCrossed:
    return UsageThresholdCrossed(account_id="acme", period_start=START, period_end=END, limit_kind=kind,
                                 threshold_percent=percent, limit=500, used=percent * 5, crossed_at=START)


def reached(hard: bool = True) -> UsageCapReached:
    return UsageCapReached(account_id="acme", period_start=START, period_end=END, limit_kind="cap", api="extract",
                           hard=hard, limit=500, used=500, reached_at=START)


def forecast_event() -> UsageForecastExceeded:
    return UsageForecastExceeded(account_id="acme", period_start=START, period_end=END, limit_kind="cap", limit=500,
                                 jobs_to_date=200, forecast_jobs=700, forecast_high=800,
                                 reached_on=date(2026, 11, 20), forecast_at=START + timedelta(days=10))


def low_event() -> BalanceLow:
    return BalanceLow(account_id="acme", balance_minor=-150, threshold_minor=2500, currency="eur", crossing=2,
                      low_at=START)


def as_sent(event: Any) -> tuple[str, dict[str, Any]]:
    kind = webhook_type(event)
    assert kind is not None
    return kind.name, json.loads(json.dumps(data_of(event, kind)))


def test_a_caps_80_and_its_reaching_are_mailed_and_its_100_is_not_a_second_mail() -> None:
    assert mailed(*as_sent(crossed("cap", 80)))
    assert not mailed(*as_sent(crossed("cap", 100)))
    assert not mailed(*as_sent(crossed("spend_cap", 100)))
    assert mailed(*as_sent(crossed("cap", 120)))
    assert mailed(*as_sent(reached()))
    # The included jobs have no "reached" event: their 100 % is the mail.
    assert mailed(*as_sent(crossed("included", 100)))
    assert mailed(*as_sent(forecast_event()))
    assert mailed(*as_sent(low_event()))
    assert not mailed("recharge.requested", {"recharge_id": "r", "amount_minor": 1000, "currency": "usd"})
    assert not mailed("keys.suspended", {"source": "cap"})
    assert not mailed("balance.recharged", {})


def test_a_balance_below_its_threshold_is_balance_low_and_a_recharge_is_recharge_requested() -> None:
    assert as_sent(low_event()) == ("balance.low", {"balance_minor": -150, "threshold_minor": 2500,
                                                    "currency": "eur", "low_at": "2026-11-01T00:00:00Z"})
    recharge = RechargeRequested(account_id="acme", recharge_id="rch_" + "0" * 32, seq=1, amount_minor=1000,
                                 currency="usd", customer_id="cus_A", payment_method_id="pm_card_visa",
                                 requested_at=START)
    assert as_sent(recharge) == ("recharge.requested", {"recharge_id": "rch_" + "0" * 32, "amount_minor": 1000,
                                                        "currency": "usd", "requested_at": "2026-11-01T00:00:00Z"})
    assert BalanceLow in WEBHOOK_TYPES and REGISTRY.decode(encode(Envelope.wrap(low_event(), producer="t")))[1] \
        == low_event()


def test_the_forecast_alert_is_a_webhook_type_with_its_fields() -> None:
    kind, data = as_sent(forecast_event())
    assert kind == "usage.forecast_exceeded" and WEBHOOK_TYPES[UsageForecastExceeded].name == kind
    assert (data["limit"], data["forecast_jobs"], data["reached_on"]) == (500, 700, "2026-11-20")


def test_each_alert_says_what_was_crossed() -> None:
    subject, body = text_of("usage.threshold_crossed", "acme", as_sent(crossed("cap", 80))[1], "usd")
    assert subject == "Account acme: 80 % used of your cap of 500 jobs"
    assert "400 jobs" in body and "2026-11-01 to 2026-12-01" in body
    subject, body = text_of("usage.cap_reached", "acme", as_sent(reached())[1], "usd")
    assert "cap of 500 jobs on extract reached" in subject and "429" in body
    assert "keep working" in text_of("usage.cap_reached", "acme", as_sent(reached(hard=False))[1], "usd")[1]
    spend = {**as_sent(crossed("spend_cap", 80))[1], "limit": 12345, "used": 9876}
    assert "123.45 USD" in text_of("usage.threshold_crossed", "acme", spend, "usd")[0]
    assert "98.76 USD" in text_of("usage.threshold_crossed", "acme", spend, "usd")[1]
    included = as_sent(crossed("included", 100))[1]
    assert "jobs your plan includes" in text_of("usage.threshold_crossed", "acme", included, "usd")[0]
    subject, body = text_of("balance.low", "acme", as_sent(low_event())[1], "usd")
    assert subject == "Account acme: prepaid balance low"
    assert "is -1.50 EUR, below its threshold of 25.00 EUR" in body
    # A row recorded before BalanceLow existed (balance.low was the recharge requested) still reads.
    old = text_of("balance.low", "acme", {"recharge_id": "r", "amount_minor": 2500, "currency": "eur"}, "usd")
    assert "25.00 EUR" in old[1]
    subject, body = text_of("usage.forecast_exceeded", "acme", as_sent(forecast_event())[1], "usd")
    assert "forecast to exceed your cap of 500 jobs" in subject
    assert "about 700 jobs" in body and "2026-11-20" in body and "200 so far" in body
    with pytest.raises(ValueError):
        text_of("keys.suspended", "acme", {}, "usd")


def test_the_mail_goes_to_the_contact_else_the_billing_inbox_under_the_alerts_id() -> None:
    event_id = uuid.uuid4()
    kind, data = as_sent(reached())
    row = {"event_id": event_id, "account_id": "acme", "type": kind, "data": json.dumps(data),
           "contact_email": "ops@acme.example"}
    message = compose(row, "billing@jobmeter.test", "usd")
    assert (message["To"], message["From"]) == ("ops@acme.example", "billing@jobmeter.test")
    assert message["Message-ID"] == f"<alert-{event_id}@jobmeter>"
    assert compose({**row, "contact_email": None}, "billing@jobmeter.test", "usd")["To"] == "billing@jobmeter.test"


def document(jobs: int, forecast: int, *, included: int | None = None, reached_on: str | None = None) -> dict[str, Any]:
    return {"jobs_to_date": jobs, "forecast_jobs": forecast, "forecast_low": jobs, "forecast_high": forecast + 50,
            "included_jobs": included, "cap_reached_on": reached_on}


def test_a_forecast_past_a_limit_not_yet_reached_is_an_alert_per_limit() -> None:
    now = START + timedelta(days=10)
    found = forecast_alerts("acme", START, END, document(300, 900, included=500, reached_on="2026-11-21"), 800, now)
    assert [(f.limit_kind, f.limit, f.reached_on) for f in found] == [("included", 500, None),
                                                                      ("cap", 800, date(2026, 11, 21))]
    # Its id is the (account, period, limit kind, scope): a later look with another forecast is the same alert.
    later = forecast_alerts("acme", START, END, document(400, 1000, included=500), 800, now + timedelta(days=1))
    assert [f.natural_id() for f in later] == [f.natural_id() for f in found]
    next_period = forecast_alerts("acme", END, END + timedelta(days=31), document(300, 900), 800,
                                  END + timedelta(days=10))
    assert next_period[0].natural_id() != found[1].natural_id()


def test_no_alert_under_the_limit_once_reached_without_a_limit_or_too_early() -> None:
    now = START + timedelta(days=10)
    assert forecast_alerts("acme", START, END, document(300, 700), 800, now) == []  # under it
    assert forecast_alerts("acme", START, END, document(800, 1200), 800, now) == []  # reached: the cap's own alert
    assert forecast_alerts("acme", START, END, document(300, 1200), None, now) == []  # nothing to exceed
    early = START + MIN_HISTORY - timedelta(minutes=1)
    assert forecast_alerts("acme", START, END, document(300, 90_000), 800, early) == []
