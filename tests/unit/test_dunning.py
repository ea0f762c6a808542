"""The dunning policy as a table: a sequence of Stripe events (in delivery order) and the standing it ends in."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.stripe import PastDueGraceExpired, StripeEventReceived
from projections.key_lifecycle import invoices
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
INVOICE_EVENTS = {"paid": "invoice.paid", "voided": "invoice.voided", "uncollectible": "invoice.marked_uncollectible"}
CUSTOMER = "cus_DUN"


def ev(
    kind: str, minutes: float = 0, *, eid: str | None = None, invoice: str = "in_1", **kw: object
) -> StripeEventReceived:
    """A Stripe event `minutes` after T0. Kinds: failed, final, paid, voided, uncollectible, sub:<status>, paused,
    resumed, other."""
    created = int((T0 + timedelta(minutes=minutes)).timestamp())
    if kind in ("failed", "final"):
        raw = build_event("invoice.payment_failed", CUSTOMER, final=kind == "final", created=created)
    elif kind in INVOICE_EVENTS:
        raw = build_event(INVOICE_EVENTS[kind], CUSTOMER, created=created)
    elif kind in ("paused", "resumed"):
        raw = build_event(f"customer.subscription.{kind}", CUSTOMER, created=created)
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


def fold(events: list[StripeEventReceived], policy: DunningPolicy = DunningPolicy()) -> tuple[DunningState, list[str]]:
    state, actions = DunningState(), []
    for event in events:
        state, acts = decide(state, event, policy)
        actions += ["suspend" if isinstance(a, Suspend) else "restore" for a in acts]
    return state, actions


def run(events: list[StripeEventReceived], policy: DunningPolicy = DunningPolicy()) -> tuple[str, list[str]]:
    state, actions = fold(events, policy)
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
        # Per invoice: paying one invoice settles that invoice, not the customer's other debts.
        ("finding 1: paying a later invoice leaves the earlier failure holding",
         [ev("final", 0, invoice="in_1"), ev("paid", 1, invoice="in_2")], "suspended", ["suspend"]),
        ("…in any order", [ev("paid", 1, invoice="in_2"), ev("final", 0, invoice="in_1")], "suspended", ["suspend"]),
        ("an active subscription does not lift an open failed invoice",
         [ev("final", 0), ev("sub:unpaid", 1), ev("paid", 2, invoice="in_2"), ev("sub:active", 3)], "suspended",
         ["suspend"]),
        ("then paying the earlier invoice restores",
         [ev("final", 0), ev("paid", 2, invoice="in_2"), ev("sub:active", 3), ev("paid", 4)], "good",
         ["suspend", "restore"]),
        ("an invoice paid late (older `created`) still settles it",
         [ev("final", 0), ev("sub:active", 5), ev("paid", 3)], "good", ["suspend", "restore"]),
        ("a voided invoice is settled", [ev("final", 0), ev("voided", 1)], "good", ["suspend", "restore"]),
        ("a failure delivered after the void changes nothing", [ev("voided", 1), ev("final", 0)], "good", []),
        ("two failed invoices: one paid still suspends",
         [ev("final", 0), ev("final", 1, invoice="in_2"), ev("paid", 2, invoice="in_2")], "suspended", ["suspend"]),
        ("an uncollectible invoice holds past a later payment",
         [ev("final", 0), ev("uncollectible", 1), ev("paid", 2, invoice="in_2")], "suspended", ["suspend"]),
        ("an uncollectible invoice paid after all restores",
         [ev("uncollectible", 1), ev("paid", 2)], "good", ["suspend", "restore"]),
        ("a retried invoice stays past due when another is paid",
         [ev("failed", 0), ev("paid", 1, invoice="in_2")], "past_due", []),
        ("a retried invoice past the grace suspends though another is paid",
         [ev("failed", 0), ev("paid", 1, invoice="in_2"), ev("sub:active", 7 * DAY)], "suspended", ["suspend"]),
        # Paused subscriptions
        ("finding 2: a paused subscription suspends", [ev("paused", 0)], "suspended", ["suspend"]),
        ("finding 2: resuming restores", [ev("paused", 0), ev("resumed", 1)], "good", ["suspend", "restore"]),
        ("status paused on an update suspends too", [ev("sub:paused", 0)], "suspended", ["suspend"]),
        ("a late pause, older than the resume, changes nothing", [ev("resumed", 1), ev("paused", 0)], "good", []),
        ("resuming does not lift an open failed invoice", [ev("final", 0), ev("paused", 1), ev("resumed", 2)],
         "suspended", ["suspend"]),
    ],
)
def test_dunning(case: str, events: list[StripeEventReceived], standing: str, actions: list[str]) -> None:
    assert run(events) == (standing, actions), case


def test_uncollectible_invoices_are_written_off_only_by_policy() -> None:
    events = [ev("final", 0), ev("uncollectible", 1), ev("paid", 2, invoice="in_2")]
    write_off = DunningPolicy(write_off_uncollectible=True)
    assert run(events, write_off) == ("good", ["suspend", "restore"])
    assert run(events)[0] == "suspended"
    # written off, the invoice neither holds nor counts as past due; another failure still suspends
    assert run([ev("failed", 0), ev("uncollectible", 1)], write_off)[0] == "good"
    assert run([*events, ev("final", 3, invoice="in_3")], write_off)[0] == "suspended"


def test_pausing_suspends_only_by_policy() -> None:
    assert run([ev("paused", 0)], DunningPolicy(suspend_paused=False)) == ("good", [])
    state, actions = fold([ev("paused", 0)])
    assert actions == ["suspend"] and state.reason == "subscription sub_DUN is paused"
    _, back = decide(state, ev("resumed", 1))
    assert back == [Restore("subscription sub_DUN is active")]


def test_the_reason_names_the_oldest_invoice_holding_and_a_restore_names_its_cause() -> None:
    history = [ev("final", 5, invoice="in_b"), ev("final", 2, invoice="in_a"), ev("paid", 9, invoice="in_c")]
    state, _ = fold(history)
    assert state.reason is not None and state.reason.startswith("payment of invoice in_a failed")
    state, _ = decide(state, ev("voided", 10, invoice="in_a"))
    assert state.standing == "suspended" and "in_b" in (state.reason or "")
    assert decide(state, ev("paid", 11, invoice="in_b"))[1] == [Restore("invoice in_b paid")]


def test_the_invoices_remembered_are_bounded_settled_ones_forgotten_first() -> None:
    policy = DunningPolicy(remembered=3)
    paid = [ev("paid", m, invoice=f"in_p{m}") for m in range(1, 10)]
    state, _ = fold([ev("final", 0, invoice="in_old"), *paid], policy)
    assert [i.id for i in state.invoices] == ["in_old", "in_p8", "in_p9"]  # the failure is kept; newest paid ones
    assert state.standing == "suspended"
    failing = [ev("final", m, invoice=f"in_f{m}") for m in range(5)]
    state, _ = fold(failing, policy)
    assert len(state.invoices) == 3 and state.standing == "suspended"
    # past the bound of unsettled invoices the oldest are forgotten: paying the remembered ones restores
    assert fold([*failing, *(ev("paid", 10 + m, invoice=f"in_f{m}") for m in (2, 3, 4))], policy)[0].standing == (
        "good"
    )


def test_invoice_facts_survive_the_store_encoding_and_old_rows_decode() -> None:
    state, _ = fold([ev("failed", 0), ev("final", 1, invoice="in_2"), ev("paid", 2, invoice="in_3")])
    assert invoices.decode(json.loads(json.dumps(invoices.encode(state.invoices)))) == state.invoices
    # a row of an older shape: fields missing, a status this code does not know, an entry without an id
    old = [{"id": "in_9", "status": "paid", "at": "2026-11-01T12:00:00+00:00"}, {"id": "in_x", "status": "draft",
           "at": "2026-11-01T12:00:00+00:00"}, {"status": "paid", "at": "2026-11-01T12:00:00+00:00"}]
    assert invoices.decode(old) == (invoices.Invoice("in_9", "paid", T0),)
    assert DunningState(invoices=invoices.decode(old)).paid_invoices == ("in_9",)


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
        ending = draw(st.sampled_from(["final", "paid", "final then paid", "open", "final then voided",
                                       "uncollectible", "final then uncollectible then paid"]))
        for kind in ending.split(" then "):
            if kind != "open":
                minute += draw(st.integers(1, 3 * DAY))
                events.append(ev(kind, minute, invoice=invoice))
        if draw(st.booleans()):
            minute += draw(st.integers(1, 3 * DAY))
            kind = draw(st.sampled_from(["sub:past_due", "sub:unpaid", "sub:active", "sub:canceled", "paused",
                                         "resumed"]))
            events.append(ev(kind, minute, invoice=invoice))
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


# Any set of invoice events, realistic or not, times drawn from a few minutes so that many share one.
invoice_events = st.builds(
    lambda kind, minute, n: ev(kind, minute, invoice=f"in_{n}"),
    st.sampled_from(["failed", "final", "paid", "voided", "uncollectible"]), st.integers(0, 4), st.integers(0, 3),
)


@given(events=st.lists(invoice_events, min_size=1, max_size=12), write_off=st.booleans(), data=st.data())
@settings(max_examples=400, deadline=None)
def test_invoice_events_fold_to_one_standing_in_any_order_with_repeats(
    events: list[StripeEventReceived], write_off: bool, data: st.DataObject
) -> None:
    policy = DunningPolicy(write_off_uncollectible=write_off)
    first, _ = fold(events, policy)
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=6))
    other, _ = fold(data.draw(st.permutations(events + repeats)), policy)
    assert (other.standing, other.reason, other.invoices, other.past_due_since) == (
        first.standing, first.reason, first.invoices, first.past_due_since
    )
    settled = {e.data_object["id"] for e in events if e.type in ("invoice.paid", "invoice.voided")}
    failed = {e.data_object["id"] for e in events if e.type == "invoice.payment_failed" and
              e.data_object["next_payment_attempt"] is None}
    uncollectible = {e.data_object["id"] for e in events if e.type == "invoice.marked_uncollectible"}
    held = (failed - settled - uncollectible) | (set() if write_off else uncollectible - settled)
    assert (first.standing == "suspended") == bool(held)  # minutes apart: no grace period runs out
