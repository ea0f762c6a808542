"""Reconciling RapidAPI: tolerance rules, the discrepancies of a month, and stable marketplace identities."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TypedDict

import pytest

from events.codec import encode
from events.envelope import Envelope
from events.rapidapi import (
    BillingUnitsDeclared,
    ReconciliationDiscrepancy,
    rapidapi_account_id,
)
from events.registry import REGISTRY
from events.types import AccountId
from projections.rapidapi.reconcile import Tolerance, UserFigures, reconcile


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", Tolerance(0, Decimal(0))),
        ("3", Tolerance(3, Decimal(0))),
        ("0.5%", Tolerance(0, Decimal("0.005"))),
        ("2, 1%", Tolerance(2, Decimal("0.01"))),
        ("1%,2", Tolerance(2, Decimal("0.01"))),
    ],
)
def test_tolerance_is_read_from_its_setting(text: str, expected: Tolerance) -> None:
    assert Tolerance.parse(text) == expected


@pytest.mark.parametrize("text", ["abc", "1.5", "-1", "2%%"])
def test_an_unreadable_tolerance_says_why(text: str) -> None:
    with pytest.raises(ValueError, match="tolerance|whole number"):
        Tolerance.parse(text)


@pytest.mark.parametrize(
    ("tolerance", "a", "b", "allowed"),
    [
        ("0", 10, 10, True),
        ("0", 10, 11, False),
        ("1", 10, 11, True),
        ("1", 10, 12, False),
        ("10%", 100, 90, True),  # 10 <= 10% of 100
        ("10%", 100, 89, False),
        ("2,10%", 5, 7, True),  # absolute is the more lenient here
        ("2,10%", 100, 91, True),  # relative is the more lenient here
        ("2,10%", 100, 80, False),
        ("0", 0, 0, True),
    ],
)
def test_tolerance_allows(tolerance: str, a: int, b: int, allowed: bool) -> None:
    assert Tolerance.parse(tolerance).allows(a, b) is allowed
    assert Tolerance.parse(tolerance).allows(b, a) is allowed


def fig(user: str, ledger: int, declared: int, reported: int, *, known: bool = True) -> UserFigures:
    return UserFigures(user, rapidapi_account_id(user) if known else None, known, ledger, declared, reported)


CASES = [
    # (name, figures, tolerance, export imported, expected (user, kind) pairs)
    ("all agree", [fig("ann", 5, 5, 5)], "0", True, []),
    ("nothing at all", [fig("ann", 0, 0, 0)], "0", True, []),
    ("RapidAPI counted more", [fig("ann", 5, 5, 7)], "0", True,
     [("ann", "declared_vs_reported"), ("ann", "ledger_vs_reported")]),
    ("a declaration was lost", [fig("ann", 5, 4, 4)], "0", True,
     [("ann", "ledger_vs_declared"), ("ann", "ledger_vs_reported")]),
    ("within the absolute tolerance", [fig("ann", 5, 4, 4)], "1", True, []),
    ("within the relative tolerance", [fig("ann", 1000, 995, 995)], "0.5%", True, []),
    ("beyond the relative tolerance", [fig("ann", 1000, 994, 994)], "0.5%", True,
     [("ann", "ledger_vs_declared"), ("ann", "ledger_vs_reported")]),
    ("missing from the export", [fig("ann", 3, 3, 0)], "0", True,
     [("ann", "declared_vs_reported"), ("ann", "ledger_vs_reported")]),
    ("no export yet: only ledger vs declared", [fig("ann", 3, 2, 0)], "0", False, [("ann", "ledger_vs_declared")]),
    ("unknown user is flagged, not dropped", [fig("zed", 0, 0, 9, known=False)], "100%", True,
     [("zed", "unknown_user")]),
    ("users are reported in name order", [fig("bob", 1, 1, 2), fig("ann", 1, 1, 1), fig("al", 0, 0, 4, known=False)],
     "0", True, [("al", "unknown_user"), ("bob", "declared_vs_reported"), ("bob", "ledger_vs_reported")]),
]


@pytest.mark.parametrize(("name", "users", "tolerance", "imported", "expected"), CASES, ids=[c[0] for c in CASES])
def test_reconcile(
    name: str, users: list[UserFigures], tolerance: str, imported: bool, expected: list[tuple[str, str]]
) -> None:
    found = reconcile("2026-10", users, Tolerance.parse(tolerance), export_imported=imported)
    assert [(d.rapidapi_user, d.kind) for d in found] == expected
    assert all(d.period == "2026-10" for d in found)


def test_a_discrepancy_is_one_fact_per_period_user_kind_and_figures() -> None:
    (a,) = reconcile("2026-10", [fig("ann", 5, 5, 6)], Tolerance(), export_imported=True)[:1]
    (b,) = reconcile("2026-10", [fig("ann", 5, 5, 6)], Tolerance(), export_imported=True)[:1]
    (c,) = reconcile("2026-10", [fig("ann", 5, 5, 7)], Tolerance(), export_imported=True)[:1]
    assert a.natural_id() == b.natural_id() != c.natural_id()
    envelope, decoded = REGISTRY.decode(encode(Envelope.wrap(a, producer="test")))
    assert isinstance(decoded, ReconciliationDiscrepancy) and decoded == a
    assert envelope.event_id == a.natural_id()


@pytest.mark.parametrize(
    ("user", "expected"),
    [("ann", "rapidapi:ann"), ("ann.lee@example.com", "rapidapi:ann.lee@example.com")],
)
def test_plain_user_names_keep_their_name(user: str, expected: str) -> None:
    assert rapidapi_account_id(user) == expected


@pytest.mark.parametrize("user", ["Ann Lee", "ännchen", "x" * 150, "a/b", "a b!"])
def test_any_user_name_gets_a_valid_stable_account_id(user: str) -> None:
    from pydantic import TypeAdapter

    account = rapidapi_account_id(user)
    assert TypeAdapter(AccountId).validate_python(account) == account
    assert account == rapidapi_account_id(user)


def test_similar_names_never_share_an_account() -> None:
    assert len({rapidapi_account_id(u) for u in ["a b", "a-b", "a  b", "a_b", "A b"]}) == 5


def test_a_job_is_declared_once_as_a_fact() -> None:
    at = datetime(2026, 10, 3, tzinfo=UTC)
    one = BillingUnitsDeclared(rapidapi_user="ann", account_id="rapidapi:ann", api="extract", job_id="j1",
                               billing_object="jobs", count=1, declared_at=at)
    two = one.model_copy(update={"declared_at": datetime(2026, 10, 4, tzinfo=UTC)})
    assert one.natural_id() == two.natural_id()
    assert one.partition_key() == "rapidapi:ann"


# --- one metric across channels: which accounts are flagged -----------------------------------------------------

class ChannelFigures(TypedDict, total=False):
    """The figures of AccountChannels a case sets (the rest keep their defaults)."""

    ledger_direct: int
    ledger_rapidapi: int
    stripe_sent: int
    rapidapi_declared: int
    rapidapi_reported: int
    payg_debits: int


CHANNEL_CASES: list[tuple[str, ChannelFigures, list[str]]] = [
    # (name, figures, expected differences)
    ("direct, Stripe agrees", dict(ledger_direct=5, stripe_sent=5), []),
    ("direct, Stripe short", dict(ledger_direct=5, stripe_sent=4), ["stripe sent 4 ≠ ledger 5"]),
    ("no Stripe store: nothing to compare", dict(ledger_direct=5), []),
    ("PAYG debited every job", dict(ledger_direct=2, payg_debits=2), []),
    ("PAYG debited one more", dict(ledger_direct=2, payg_debits=3), ["payg debited 3 ≠ ledger 2"]),
    ("RapidAPI agrees; its jobs are not Stripe's", dict(ledger_direct=1, ledger_rapidapi=3, stripe_sent=1,
                                                        rapidapi_declared=3, rapidapi_reported=3), []),
    ("RapidAPI export not in yet", dict(ledger_rapidapi=3, rapidapi_declared=3), []),
    ("RapidAPI both differ", dict(ledger_rapidapi=3, rapidapi_declared=2, rapidapi_reported=4),
     ["rapidapi declared 2 ≠ ledger 3", "rapidapi reported 4 ≠ ledger 3"]),
]


@pytest.mark.parametrize(("name", "figures", "expected"), CHANNEL_CASES, ids=[c[0] for c in CHANNEL_CASES])
def test_channel_differences(name: str, figures: ChannelFigures, expected: list[str]) -> None:
    from services.ledger.channels import AccountChannels, differences

    account = AccountChannels("acct", None, **figures)
    assert differences(account) == expected


@pytest.mark.parametrize(("period", "start", "end"), [("2026-10", "2026-10-01", "2026-11-01"),
                                                      ("2026-12", "2026-12-01", "2027-01-01")])
def test_month_bounds(period: str, start: str, end: str) -> None:
    from services.ledger.channels import month_bounds

    assert [d.date().isoformat() for d in month_bounds(period)] == [start, end]
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds("2026-13")
