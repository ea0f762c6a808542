"""What a batch of records means for the PAYG fold: each record sorted into its place, or left out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events.accounts import AccountRegistered
from events.envelope import Envelope, Event
from events.jobs import JobCompleted
from events.payg import PaygConfigured, RechargeFailed, recharge_id
from events.stripe import StripeEventReceived
from projections.payg.batch import Batch, parked_topup
from projections.records import Recorded

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)
SESSION = {"id": "cs_1", "object": "checkout.session", "mode": "payment", "payment_status": "paid",
           "amount_total": 1500, "currency": "usd", "customer": "cus_A", "metadata": {"account_id": "acme"}}


def recorded(events: list[Event]) -> list[Recorded[Event]]:
    return [Recorded("t", 0, i, NOW + timedelta(seconds=i), Envelope.wrap(e, producer="test"), e)
            for i, e in enumerate(events)]


def job(account: str, job_id: str, channel: str = "direct") -> JobCompleted:
    return JobCompleted(account_id=account, api="extract", job_id=job_id, channel=channel, mode="sync",
                        completed_at=NOW)


def test_each_record_goes_to_its_place_and_the_batch_time_is_the_latest() -> None:
    rch = recharge_id("acme", 1)
    intent = {"id": "pi_1", "object": "payment_intent", "amount_received": 2000, "currency": "usd",
              "metadata": {"recharge_id": rch, "account_id": "acme"}}
    events: list[Event] = [
        job("acme", "j1"),
        job("acme", "j2", channel="rapidapi"),  # RapidAPI bills its own traffic
        AccountRegistered(account_id="beta", model="payg"),
        PaygConfigured(account_id="gamma", threshold_minor=100, recharge_minor=500, auto_recharge=False,
                       configured_at=NOW),
        RechargeFailed(account_id="delta", recharge_id=rch, code="card_declined", failed_at=NOW),
        StripeEventReceived(stripe_event_id="evt_1", type="checkout.session.completed", created=NOW,
                            data_object=SESSION),
        StripeEventReceived(stripe_event_id="evt_2", type="payment_intent.succeeded", created=NOW,
                            data_object=intent),
        StripeEventReceived(stripe_event_id="evt_3", type="customer.created", created=NOW,
                            data_object={"id": "cus_B", "object": "customer"}),
    ]
    batch = Batch.of(recorded(events))
    assert batch.at == NOW + timedelta(seconds=len(events) - 1)
    assert [j.job_id for j in batch.jobs] == ["j1"]
    assert [r.account_id for r in batch.registrations] == ["beta"]
    assert [c.account_id for c in batch.configs] == ["gamma"]
    assert [f.account_id for f in batch.failures] == ["delta"]
    assert [t.session_id for t, _ in batch.topups] == ["cs_1"]
    assert [(s.recharge_id, s.succeeded, s.amount_minor) for s in batch.settlements] == [(rch, True, 2000)]
    assert batch.cards == []
    assert batch.accounts() == {"acme", "beta", "gamma", "delta"}


def test_a_parked_topup_reads_back_as_the_topup_it_was() -> None:
    event = StripeEventReceived(stripe_event_id="evt_1", type="checkout.session.completed", created=NOW,
                                data_object=SESSION)
    envelope = Envelope.wrap(event, producer="test")
    topup, back = parked_topup(envelope.model_dump_json())
    assert (topup.account_id, topup.session_id, topup.amount_minor) == ("acme", "cs_1", 1500)
    assert back.event_id == envelope.event_id


def test_a_parked_record_that_is_no_longer_a_topup_is_refused() -> None:
    event = StripeEventReceived(stripe_event_id="evt_9", type="customer.created", created=NOW,
                                data_object={"id": "cus_B", "object": "customer"})
    with pytest.raises(RuntimeError, match="no longer reads as a top-up"):
        parked_topup(Envelope.wrap(event, producer="test").model_dump_json())
