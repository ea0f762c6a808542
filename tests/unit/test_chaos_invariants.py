"""The chaos invariants are pure checks over figures: each is a table of figures and whether it must hold."""

from __future__ import annotations

from typing import Any

import pytest

from services.devtools.chaos.invariants import (
    Recharge,
    doctor_empty,
    lag_recovered,
    ledger_counts_each_acknowledged_job_once,
    meter_identifiers_distinct,
    meter_sent_equals_ledger,
    payg_debits_equal_jobs_times_price,
    recharges_charged_once,
    recharges_final,
    refusals_accounted,
)


@pytest.mark.parametrize(("acknowledged", "distinct", "total", "holds"), [
    (100, 100, 100, True),
    (100, 99, 99, False),  # one acknowledged job lost
    (100, 100, 101, False),  # one job counted twice in the sums
    (0, 0, 0, True),
])
def test_ledger_exact(acknowledged: int, distinct: int, total: int, holds: bool) -> None:
    assert ledger_counts_each_acknowledged_job_once(acknowledged, distinct, total).holds is holds


@pytest.mark.parametrize(("bad", "refused", "garbage", "dead", "holds"), [
    (10, 10, 5, 5, True),
    (10, 9, 5, 5, False),  # a bad item vanished
    (10, 10, 5, 4, False),  # garbage never reached the dead letters
])
def test_refusals_accounted(bad: int, refused: int, garbage: int, dead: int, holds: bool) -> None:
    assert refusals_accounted(bad, refused, garbage, dead).holds is holds


@pytest.mark.parametrize(("seconds", "down", "holds"), [
    (3.0, [], True), (90.0, [], True), (90.5, [], False), (None, [], False),
    (3.0, ["subscriptions"], False),  # caught up, but a consumer is not running
])
def test_lag_recovered(seconds: float | None, down: list[str], holds: bool) -> None:
    assert lag_recovered(seconds, 90.0, down).holds is holds


@pytest.mark.parametrize(("ledger", "sent", "unsent", "holds"), [
    ({"cus_a": 10, "cus_b": 5}, {"cus_a": 10, "cus_b": 5}, {}, True),
    ({"cus_a": 10}, {"cus_a": 9}, {}, False),  # a job not sent
    ({"cus_a": 10}, {"cus_a": 11}, {}, False),  # a job sent twice
    ({"cus_a": 10}, {"cus_a": 10}, {"cus_a": {"pending": 0}}, True),  # an empty open row is nothing owed
    ({"cus_a": 10}, {"cus_a": 7}, {"cus_a": {"expired": 3}}, False),  # expired windows are a failure
    ({"cus_a": 10}, {"cus_a": 10}, {"cus_a": {"failed": 2}}, False),  # refused by Stripe, shown
    ({"cus_a": 0}, {}, {}, True),
    ({}, {"cus_x": 1}, {}, False),  # usage sent for a customer with no jobs
])
def test_meter_sent_equals_ledger(ledger: dict[str, int], sent: dict[str, int], unsent: dict[str, dict[str, int]],
                                  holds: bool) -> None:
    inv = meter_sent_equals_ledger(ledger, sent, unsent)
    assert inv.holds is holds
    assert inv.figures["ledger_jobs"] == sum(ledger.values())


@pytest.mark.parametrize(("rows", "holds"), [
    ([("cus_a-100-5s-0", "cus_a", "w100", 0, 7), ("cus_a-100-5s-1", "cus_a", "w100", 1, 2)], True),
    ([("id-1", "cus_a", "w100", 0, 7), ("id-1", "cus_a", "w105", 0, 7)], False),  # one identifier, two windows
    ([("id-1", "cus_a", "w100", 0, 7), ("id-1", "cus_b", "w100", 0, 7)], False),  # one identifier, two customers
    ([("id-1", "cus_a", "w100", 0, 7), ("id-1", "cus_a", "w100", 0, 8)], False),  # one identifier, two values
    ([("id-1", "cus_a", "w100", 0, 7), ("id-1", "cus_a", "w100", 0, 7)], True),  # outbox and bus agree
    ([], True),
])
def test_meter_identifiers_distinct(rows: list[tuple[str, str, str, int, int]], holds: bool) -> None:
    assert meter_identifiers_distinct(rows).holds is holds


PRICES = {"extract": 5, "classify": 3}


@pytest.mark.parametrize(("jobs", "debits", "holds"), [
    ({"a": {"extract": 2, "classify": 1}}, {"a": (3, 13)}, True),
    ({"a": {"extract": 2}}, {"a": (2, 9)}, False),  # a wrong price
    ({"a": {"extract": 2}}, {"a": (1, 5)}, False),  # a job not debited
    ({"a": {"extract": 2}}, {"a": (3, 15)}, False),  # a job debited twice
    ({"a": {}}, {}, True),
    ({}, {"b": (1, 3)}, False),  # a debit with no job behind it
])
def test_payg_debits_equal_jobs_times_price(jobs: dict[str, dict[str, int]], debits: dict[str, tuple[int, int]],
                                            holds: bool) -> None:
    assert payg_debits_equal_jobs_times_price(jobs, PRICES, debits).holds is holds


def recharge(n: int, state: str = "succeeded", *, key: str | None = None, pi: str | None = "") -> Recharge:
    return Recharge(f"r{n}", "a", key or f"r{n}", f"pi_{n}" if pi == "" else pi, state, 400)


RECHARGE_CASES: list[tuple[str, list[Recharge], list[tuple[str, str, int]], bool]] = [
    ("each credited once", [recharge(1), recharge(2)], [("pi_1", "a", 400), ("pi_2", "a", 400)], True),
    ("in flight, not yet credited", [recharge(1, "requested")], [], True),
    ("not yet sent", [recharge(1, "requested", pi=None)], [], True),
    ("credited twice", [recharge(1)], [("pi_1", "a", 400), ("pi_1", "a", 400)], False),
    ("succeeded, never credited", [recharge(1)], [], False),
    ("credited the wrong amount", [recharge(1)], [("pi_1", "a", 4000)], False),
    ("one key for two recharges", [recharge(1, key="k"), recharge(2, key="k")],
     [("pi_1", "a", 400), ("pi_2", "a", 400)], False),
    ("one PaymentIntent for two recharges", [recharge(1, pi="pi_x"), recharge(2, pi="pi_x")], [("pi_x", "a", 400)],
     False),
    ("a credit no recharge made", [], [("pi_9", "a", 400)], False),
    ("failed, yet credited", [recharge(1, "failed")], [("pi_1", "a", 400)], False),
]


@pytest.mark.parametrize(("case", "recharges", "credits", "holds"), RECHARGE_CASES, ids=[c[0] for c in RECHARGE_CASES])
def test_recharges_charged_once(case: str, recharges: list[Recharge], credits: list[tuple[str, str, int]],
                                holds: bool) -> None:
    inv = recharges_charged_once(recharges, credits)
    assert inv.holds is holds, inv.figures


def test_figures_are_json_ready() -> None:
    inv = recharges_charged_once([recharge(1)], [("pi_1", "a", 400)])
    shown: dict[str, Any] = inv.as_json()
    assert shown["holds"] is True and shown["by_state"] == {"succeeded": 1} and shown["credited_minor"] == 400


@pytest.mark.parametrize(("states", "holds"), [
    (["succeeded", "failed", "canceled"], True),
    ([], True),
    (["succeeded", "requested"], False),  # still in flight when the run ended
])
def test_recharges_final(states: list[str], holds: bool) -> None:
    inv = recharges_final([recharge(n, state) for n, state in enumerate(states)])
    assert inv.holds is holds and inv.figures["not_final_count"] == states.count("requested")
    assert [r["recharge_id"] for r in inv.figures["not_final"]] == [
        f"r{n}" for n, state in enumerate(states) if state == "requested"]


def item(kind: str, subject: str) -> dict[str, Any]:
    return {"kind": kind, "subject": subject, "age_seconds": 1.0, "detail": "-", "resolve": "-"}


@pytest.mark.parametrize(("items", "injected_only", "holds"), [
    ([], set(), True),
    ([item("dead-letters", "ledger"), item("dead-letters", "meter")], {"ledger", "meter"}, True),  # the garbage
    ([item("dead-letters", "ledger")], set(), False),  # a dead letter the run did not inject
    ([item("dead-letters", "ledger"), item("dead-letters", "payg")], {"ledger"}, False),
    ([item("meter-report-unsent", "acme window 2026-01-01T00:00:00+00:00 #0")], {"ledger"}, False),
    ([item("payg-recharge-unsettled", "acme")], set(), False),
])
def test_doctor_empty(items: list[dict[str, Any]], injected_only: set[str], holds: bool) -> None:
    inv = doctor_empty(items, injected_only)
    assert inv.holds is holds
    assert inv.figures["listed"] == len(inv.figures["items"])  # what it listed is shown, not just counted
