"""Refunds and disputes of a PAYG payment, by the pure rules: what each sequence of Stripe events (as the bridge
parses them) moves, with the fold's dedupe (a movement id recorded once) and its bookkeeping (a charge's refunds
so far, a dispute's debit) played by a dict."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import permutations

import pytest

from events.envelope import Envelope, Event
from events.stripe import StripeEventReceived
from projections.payg.batch import Batch
from projections.payg.reversals import Pending
from projections.payg.rules import Reversal, ReversalPlan, dispute_reversals, plan_reversals, refund_reversal
from projections.payg.stripe_events import Dispute, Refund, dispute_of, refund_of
from projections.records import Recorded
from services.stripe_adapter.fixtures import charge, dispute, encode_event, payment_event
from services.stripe_adapter.webhooks import parse

PI = "pi_topup1"
CREDITED = 1000


def received(event_type: str, obj: dict[str, object], event_id: str | None = None) -> StripeEventReceived:
    return parse(encode_event(payment_event(event_type, obj, event_id=event_id)))


def refunded(total: int, *, pi: str = PI) -> Refund:
    refund = refund_of(received("charge.refunded", charge(pi, amount=CREDITED, amount_refunded=total,
                                                           customer="cus_A")))
    assert refund is not None
    return refund


def disputed(kind: str, status: str, *, dp: str = "dp_1", amount: int = CREDITED) -> Dispute:
    found = dispute_of(received(f"charge.dispute.{kind}", dispute(PI, amount=amount, status=status, dispute_id=dp)))
    assert found is not None
    return found


def net(events: list[Refund | Dispute], credited: int = CREDITED) -> tuple[int, int]:
    """(what the sequence moved the balance by, how many movements it recorded), folded one by one as the fold
    does: movements keyed by id, recorded once."""
    movements: dict[str, tuple[str, str, int]] = {}
    for e in events:
        if isinstance(e, Refund):
            already = -sum(a for kind, ref, a in movements.values() if kind == "refund" and ref == e.charge_id)
            move = refund_reversal(e.charge_id, e.refunded_minor, credited, already)
            moves = [move] if move else []
        else:
            debit = movements.get(f"dispute:{e.dispute_id}")
            moves = dispute_reversals(e.dispute_id, e.amount_minor, e.status, e.closed, credited,
                                      None if debit is None else -debit[2])
        for m in moves:
            movements.setdefault(m.movement_id, (m.kind, m.reference, m.amount_minor))
    return sum(a for _, _, a in movements.values()), len(movements)


REFUNDS = {
    "full refund": ([1000], -1000, 1),
    "partial refund": ([300], -300, 1),
    "partial then full": ([300, 1000], -1000, 2),
    "three partials": ([100, 250, 600], -600, 3),
    "duplicate": ([300, 300], -300, 1),
    "duplicate of the full refund after it": ([300, 1000, 300, 1000], -1000, 2),
    "out of order: the full total first": ([1000, 300], -1000, 1),
    "out of order: the middle total last": ([100, 600, 250], -600, 2),
    "more than was credited": ([1500], -1000, 1),
    "nothing refunded yet": ([0], 0, 0),
}


@pytest.mark.parametrize(("totals", "moved", "movements"), REFUNDS.values(), ids=REFUNDS.keys())
def test_refunds_debit_the_cumulative_total_once(totals: list[int], moved: int, movements: int) -> None:
    assert net([refunded(t) for t in totals]) == (moved, movements)


def test_refunds_of_two_charges_are_counted_apart() -> None:
    assert net([refunded(300), refunded(400, pi="pi_other"), refunded(300)], credited=1000) == (-700, 2)


DISPUTES = {
    "created": ([("created", "needs_response")], -1000),
    "created, won": ([("created", "needs_response"), ("closed", "won")], 0),
    "created, lost": ([("created", "needs_response"), ("closed", "lost")], -1000),
    "won before created": ([("closed", "won"), ("created", "needs_response")], 0),
    "lost before created": ([("closed", "lost"), ("created", "needs_response")], -1000),
    "won alone": ([("closed", "won")], 0),
    "lost alone": ([("closed", "lost")], -1000),
    "every event twice": ([("created", "needs_response"), ("created", "needs_response"), ("closed", "won"),
                           ("closed", "won"), ("created", "needs_response")], 0),
    "an inquiry withdraws nothing": ([("created", "warning_needs_response"), ("closed", "warning_closed")], 0),
}


@pytest.mark.parametrize(("events", "moved"), DISPUTES.values(), ids=DISPUTES.keys())
def test_a_dispute_debits_once_and_a_won_one_gives_it_back(events: list[tuple[str, str]], moved: int) -> None:
    assert net([disputed(kind, status) for kind, status in events])[0] == moved


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_a_dispute_nets_the_same_in_any_order(outcome: str) -> None:
    seen = [("created", "needs_response"), ("created", "under_review"), ("closed", outcome), ("closed", outcome)]
    results = {net([disputed(k, s) for k, s in order])[0] for order in permutations(seen)}
    assert results == {0 if outcome == "won" else -1000}


def test_a_dispute_takes_at_most_what_was_credited_and_gives_back_what_it_took() -> None:
    assert net([disputed("created", "needs_response", amount=1500)]) == (-1000, 1)
    assert net([disputed("created", "needs_response", amount=1500), disputed("closed", "won")]) == (0, 2)


def test_a_refund_and_a_dispute_of_the_same_payment_add_up() -> None:
    assert net([refunded(300), disputed("created", "needs_response", amount=700), disputed("closed", "lost")]) == (
        -1000, 2)


def test_what_the_bridge_parses_from_refund_and_dispute_events() -> None:
    event = received("charge.dispute.created", dispute(PI, amount=500, dispute_id="dp_x"), event_id="evt_dp_x")
    assert event.customer_id is None  # a dispute names no customer: accepted, keyed by its event id
    assert event.partition_key() == "evt_dp_x"
    assert dispute_of(event) == Dispute("dp_x", PI, 500, "usd", "needs_response", closed=False)
    assert refund_of(event) is None
    refund = received("charge.refunded", charge(PI, amount=1000, amount_refunded=250, customer="cus_A",
                                                charge_id="ch_x"))
    assert refund.customer_id == "cus_A"
    assert refund_of(refund) == Refund("ch_x", PI, 250, "usd")
    assert dispute_of(refund) is None
    # A charge paid without a PaymentIntent (stripe-mock's own fixture has none) reverses nothing PAYG credited.
    assert refund_of(received("charge.refunded", {**charge(PI, amount=1000, amount_refunded=1000),
                                                  "payment_intent": None})) is None
    assert refund_of(received("charge.succeeded", charge(PI, amount=1000))) is None


def test_a_batch_sorts_refunds_and_disputes_and_names_their_payments() -> None:
    now = datetime(2025, 3, 1, tzinfo=UTC)
    events: list[Event] = [
        received("charge.refunded", charge("pi_a", amount=1000, amount_refunded=100)),
        received("charge.dispute.created", dispute("pi_b", amount=1000)),
        received("charge.dispute.closed", dispute("pi_b", amount=1000, status="won")),
        received("charge.dispute.updated", dispute("pi_c", amount=1000)),  # not one we read
    ]
    batch = Batch.of([Recorded("t", 0, i, now, Envelope.wrap(e, producer="test"), e) for i, e in enumerate(events)])
    assert [r.refunded_minor for r, _ in batch.refunds] == [100]
    assert [(d.dispute_id, d.closed) for d, _ in batch.disputes] == [("dp_b", False), ("dp_b", True)]
    assert batch.reversed_intents() == {"pi_a", "pi_b"}
    assert batch.accounts() == set()  # their accounts are the payments' ones, looked up by the fold


# Parking: a refund or dispute folded before its payment's credit waits for it (`plan_reversals`), and the fold
# played here as in `projections.payg.reversals`: batches of log records, credits first, then what was parked for
# them, then the batch's own refunds and disputes.

CREDIT = "credit"
Step = Refund | Dispute | str  # a refund, a dispute, or the credit of PI


def pending(step: Refund | Dispute) -> Pending:
    event = received("charge.refunded", charge(PI, amount=CREDITED))
    return Pending(step, Envelope.wrap(event, producer="test"), None)


def fold(batches: list[list[Step]]) -> tuple[dict[str, int], list[str]]:
    """The movements (id → amount) the batches record, and the keys still parked after them."""
    movements: dict[str, tuple[str, str, int]] = {}
    parked: dict[str, Pending] = {}
    credited: set[str] = set()
    for batch in batches:
        credits = {PI} if CREDIT in batch else set()
        credited |= credits
        arrived = [pending(s) for s in batch if not isinstance(s, str)]
        waiting = [p for p in parked.values() if p.payment_intent_id in credits]
        plan = plan_reversals(waiting, arrived, credited)
        for p in plan.apply:
            for m in moves_of(p.reversal, movements):
                movements.setdefault(m.movement_id, (m.kind, m.reference, m.amount_minor))
        for key in plan.released:
            del parked[key]
        for p in plan.park:
            parked.setdefault(p.key, p)
    return {k: a for k, (_, _, a) in movements.items()}, sorted(parked)


def moves_of(e: Refund | Dispute, movements: dict[str, tuple[str, str, int]]) -> list[Reversal]:
    if isinstance(e, Refund):
        already = -sum(a for kind, ref, a in movements.values() if kind == "refund" and ref == e.charge_id)
        move = refund_reversal(e.charge_id, e.refunded_minor, CREDITED, already)
        return [move] if move else []
    debit = movements.get(f"dispute:{e.dispute_id}")
    return dispute_reversals(e.dispute_id, e.amount_minor, e.status, e.closed, CREDITED,
                             None if debit is None else -debit[2])


def cuts(steps: list[Step]) -> list[list[list[Step]]]:
    """Every way of cutting the log into consecutive batches."""
    out = []
    for mask in range(2 ** (len(steps) - 1)):
        batches, current = [], [steps[0]]
        for i, step in enumerate(steps[1:]):
            if mask >> i & 1:
                batches.append(current)
                current = []
            current.append(step)
        out.append([*batches, current])
    return out


REVERSALS: dict[str, list[Step]] = {
    "two refunds": [refunded(300), refunded(1000)],
    "a refund twice": [refunded(300), refunded(300), refunded(600)],
    "a dispute won": [disputed("created", "needs_response", amount=400), disputed("closed", "won", amount=400)],
    "a dispute lost, a refund": [disputed("created", "needs_response", amount=400), refunded(200),
                                 disputed("closed", "lost", amount=400)],
}


@pytest.mark.parametrize("reversals", REVERSALS.values(), ids=REVERSALS.keys())
def test_wherever_the_credit_falls_and_however_the_log_is_cut_the_same_movements_are_recorded(
    reversals: list[Step],
) -> None:
    credit_first, left = fold([[CREDIT, *reversals]])
    assert left == []
    for at in range(len(reversals) + 1):  # the credit before, among or after its refunds and disputes
        steps = [*reversals[:at], CREDIT, *reversals[at:]]
        for batches in cuts(steps):
            assert fold(batches) == (credit_first, []), batches


def test_refund_then_credit_nets_what_credit_then_refund_does() -> None:
    assert fold([[refunded(300)], [CREDIT]]) == fold([[CREDIT], [refunded(300)]]) == ({"refund:ch_topup1:300": -300},
                                                                                      [])
    dispute_first = fold([[disputed("created", "needs_response", amount=400)], [CREDIT],
                          [disputed("closed", "won", amount=400)]])
    assert sum(dispute_first[0].values()) == 0 and len(dispute_first[0]) == 2


def test_reversals_of_a_payment_never_credited_wait_once_each_and_move_nothing() -> None:
    movements, left = fold([[refunded(300)], [refunded(300), disputed("created", "needs_response")],
                            [disputed("created", "needs_response")]])
    assert movements == {}
    assert left == ["dispute:dp_1:needs_response:open", "refund:ch_topup1:300"]


def test_a_plan_applies_the_parked_first_and_parks_only_the_batch_s_uncredited() -> None:
    old, new, other = pending(refunded(300)), pending(refunded(1000)), pending(refunded(500, pi="pi_other"))
    plan = plan_reversals([old], [new, other], credited={PI})
    assert (plan.apply, plan.park, plan.released) == ([old, new], [other], [old.key])
    # Parked ones whose payment still credited nothing stay where they are.
    assert plan_reversals([other], [], credited={PI}) == ReversalPlan([], [], [])
