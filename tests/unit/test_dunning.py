"""The dunning policy as a table: a sequence of Stripe events (in delivery order) and the standing it ends in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.stripe import PastDueGraceExpired, StripeEventReceived
from projections.key_lifecycle.dunning import (
    DunningPolicy,
    DunningState,
    Restore,
    Suspend,
    decide,
    expire,
    grace_deadline,
)
from services.stripe_adapter.fixtures import build_event

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
CUSTOMER = "cus_DUN"


def ev(
    kind: str, minutes: float = 0, *, eid: str | None = None, invoice: str = "in_1", **kw: object
) -> StripeEventReceived:
    """A Stripe event `minutes` after T0. Kinds: failed, final, paid, sub:<status>, other."""
    created = int((T0 + timedelta(minutes=minutes)).timestamp())
    if kind in ("failed", "final"):
        raw = build_event("invoice.payment_failed", CUSTOMER, final=kind == "final", created=created)
    elif kind == "paid":
        raw = build_event("invoice.paid", CUSTOMER, created=created)
    elif kind.startswith("sub:"):
        raw = build_event("customer.subscription.updated", CUSTOMER, status=kind[4:], created=created)
    else:
        raw = build_event("invoice.paid", CUSTOMER, created=created)
        raw["type"] = "customer.updated"
    if raw["data"]["object"]["object"] == "invoice":
        raw["data"]["object"]["id"] = invoice
    raw["data"]["object"].update(kw)
    return StripeEventReceived(
        stripe_event_id=eid or f"evt_{kind.replace(':', '')}{str(minutes).replace('.', '')}{invoice}",
        type=raw["type"], created=datetime.fromtimestamp(raw["created"], UTC), customer_id=CUSTOMER,
        data_object=raw["data"]["object"],
    )


DAY = 24 * 60


def run(events: list[StripeEventReceived], policy: DunningPolicy = DunningPolicy()) -> tuple[str, list[str]]:
    state, actions = DunningState(), []
    for event in events:
        state, acts = decide(state, event, policy)
        actions += ["suspend" if isinstance(a, Suspend) else "restore" for a in acts]
    return state.standing, actions


@pytest.mark.parametrize(
    ("case", "events", "standing", "actions"),
    [
        ("a retryable failure is only past due", [ev("failed", 0)], "past_due", []),
        ("no further attempt suspends", [ev("final", 0)], "suspended", ["suspend"]),
        ("paid restores", [ev("final", 0), ev("paid", 1)], "good", ["suspend", "restore"]),
        ("failed → paid → failed again", [ev("final", 0), ev("paid", 1), ev("final", 2, invoice="in_2")],
         "suspended", ["suspend", "restore", "suspend"]),
        ("a late payment_failed after paid is ignored", [ev("paid", 5), ev("final", 1)], "good", []),
        ("a late failure of a paid invoice, same second", [ev("paid", 1), ev("final", 1)], "good", []),
        ("failure and payment in one second, failure first", [ev("final", 1), ev("paid", 1)], "good",
         ["suspend", "restore"]),
        ("a duplicate suspension is one suspension", [ev("final", 0), ev("final", 0), ev("final", 0)],
         "suspended", ["suspend"]),
        ("a duplicate paid after a newer failure changes nothing",
         [ev("final", 0), ev("paid", 1), ev("final", 2, invoice="in_2"), ev("paid", 1)], "suspended",
         ["suspend", "restore", "suspend"]),
        ("unpaid subscription suspends", [ev("sub:unpaid", 0)], "suspended", ["suspend"]),
        ("canceled subscription suspends", [ev("sub:canceled", 0)], "suspended", ["suspend"]),
        ("back to active restores", [ev("sub:unpaid", 0), ev("sub:active", 1)], "good", ["suspend", "restore"]),
        ("an old active after unpaid is ignored", [ev("sub:unpaid", 5), ev("sub:active", 1)], "suspended",
         ["suspend"]),
        ("past_due within the grace period", [ev("sub:past_due", 0), ev("failed", 6 * DAY)], "past_due", []),
        ("past_due outlasting the grace period suspends", [ev("sub:past_due", 0), ev("failed", 7 * DAY)],
         "suspended", ["suspend"]),
        ("past_due then paid in time", [ev("failed", 0), ev("paid", DAY)], "good", []),
        ("past_due while suspended stays suspended", [ev("final", 0), ev("sub:past_due", 1)], "suspended",
         ["suspend"]),
        ("a retry scheduled while suspended keeps it suspended", [ev("sub:unpaid", 0), ev("failed", 1)],
         "suspended", ["suspend"]),
        ("incomplete changes nothing", [ev("sub:incomplete", 0)], "good", []),
        ("unrelated events change nothing", [ev("other", 0)], "good", []),
        ("uncollectible suspends",
         [ev("final", 0).model_copy(update={"type": "invoice.marked_uncollectible", "stripe_event_id": "evt_u"})],
         "suspended", ["suspend"]),
    ],
)
def test_dunning(case: str, events: list[StripeEventReceived], standing: str, actions: list[str]) -> None:
    assert run(events) == (standing, actions), case


def test_every_order_of_one_history_ends_the_same() -> None:
    from itertools import permutations

    history = [ev("failed", 0), ev("final", 10), ev("paid", 20), ev("final", 30, invoice="in_2")]
    ends = {run(list(order))[0] for order in permutations(history)}
    assert ends == {"suspended"}


def test_the_grace_period_is_configured_in_the_policy() -> None:
    events = [ev("sub:past_due", 0), ev("failed", 60)]
    assert run(events, DunningPolicy(past_due_grace=timedelta(minutes=30)))[0] == "suspended"
    assert run(events)[0] == "past_due"


def test_reasons_say_why() -> None:
    state, actions = decide(DunningState(), ev("final", 0))
    assert actions == [Suspend(state.reason or "")]
    assert "will not retry" in actions[0].reason
    _, back = decide(state, ev("paid", 1))
    assert back == [Restore("invoice in_1 paid")]


def test_a_grace_tick_suspends_an_open_past_due_episode_only() -> None:
    state, _ = decide(DunningState(), ev("sub:past_due", 0))
    deadline = grace_deadline(state)
    assert deadline == T0 + timedelta(days=7)
    tick = PastDueGraceExpired(customer_id=CUSTOMER, past_due_since=T0, deadline=deadline)
    early = tick.model_copy(update={"deadline": T0 + timedelta(days=1)})
    assert expire(state, early)[0].standing == "past_due"
    suspended, actions = expire(state, tick)
    assert suspended.standing == "suspended" and actions == [Suspend("past due for more than 7 day(s)")]
    assert expire(suspended, tick) == (suspended, [])  # the tick again: already done
    paid, _ = decide(state, ev("paid", 60))
    assert expire(paid, tick) == (replace(paid, clock=tick.deadline), [])  # paid in time: the episode is over
    # a payment made before the tick but delivered after it still restores
    assert decide(suspended, ev("paid", 60))[1] == [Restore("invoice in_1 paid")]
    # a retry failure after the payment opens a new episode, with its own grace
    again, _ = decide(paid, ev("failed", 120, invoice="in_2"))
    assert again.standing == "past_due" and grace_deadline(again) == T0 + timedelta(minutes=120, days=7)


# A customer's history as Stripe would produce it: per invoice, retried failures, then either a final failure
# or (maybe after it) a payment; subscription status changes between. Times are distinct minutes.
@st.composite
def histories(draw: st.DrawFn) -> list[StripeEventReceived]:
    events: list[StripeEventReceived] = []
    minute = 0
    for n in range(draw(st.integers(1, 3))):
        invoice = f"in_{n}"
        for _ in range(draw(st.integers(0, 2))):
            minute += draw(st.integers(1, 3 * DAY))
            events.append(ev("failed", minute, invoice=invoice))
        ending = draw(st.sampled_from(["final", "paid", "final then paid", "open"]))
        for kind in ending.split(" then "):
            if kind != "open":
                minute += draw(st.integers(1, 3 * DAY))
                events.append(ev(kind, minute, invoice=invoice))
        if draw(st.booleans()):
            minute += draw(st.integers(1, 3 * DAY))
            events.append(ev("sub:" + draw(st.sampled_from(["past_due", "unpaid", "active", "canceled"])), minute,
                             invoice=invoice))
    return events


@given(history=histories(), data=st.data())
@settings(max_examples=400, deadline=None)
def test_arrival_order_and_duplicates_do_not_change_the_outcome(
    history: list[StripeEventReceived], data: st.DataObject
) -> None:
    in_order = run(history)[0]
    copies = data.draw(st.lists(st.sampled_from(history), max_size=5)) if history else []
    delivered = data.draw(st.permutations(history + copies))
    assert run(delivered)[0] == in_order
