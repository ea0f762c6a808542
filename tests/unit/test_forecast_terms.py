"""What a forecast of jobs costs, by how the account pays (projections/ledger/forecast_terms.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from projections.ledger.forecast_terms import PayAsYouGo, Subscription, Unpriced, charge

START, END = datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)


def test_a_subscription_pays_the_overage_past_its_included_jobs_only() -> None:
    plan = Subscription(START, END, included=1000, unit_minor=Decimal("0.5"), currency="usd")
    within = charge(plan, 900, {"extract": 300})
    assert (within.included_jobs, within.overage_jobs, within.amount_minor, within.currency) == (1000, 0, 0, "usd")
    past = charge(plan, 1301, {"extract": 300})
    assert (past.overage_jobs, past.amount_minor) == (301, 151)  # 150.5 cents, half up


def test_payg_spend_keeps_the_mix_of_api_surfaces_so_far() -> None:
    terms = PayAsYouGo({"extract": 5, "classify": 3}, "usd")
    # 30 extract + 10 classify so far cost 180 over 40 jobs: 4.5 a job; 100 jobs forecast cost 450.
    forecast = charge(terms, 100, {"extract": 30, "classify": 10})
    assert (forecast.included_jobs, forecast.overage_jobs, forecast.amount_minor) == (None, None, 450)
    # Cheap jobs so far forecast a cheaper month than expensive ones.
    assert charge(terms, 100, {"classify": 10}).amount_minor == 300
    assert charge(terms, 100, {"extract": 10}).amount_minor == 500


def test_payg_with_no_jobs_yet_prices_at_the_mean_and_ignores_unpriced_surfaces() -> None:
    terms = PayAsYouGo({"extract": 5, "classify": 3}, "usd")
    assert charge(terms, 10, {}).amount_minor == 40
    assert charge(terms, 0, {}).amount_minor == 0
    # A job on a surface without a price is dead-lettered by the PAYG fold, never debited.
    assert charge(terms, 20, {"extract": 10, "legacy": 10}).amount_minor == 50


def test_an_account_billed_elsewhere_has_no_charge() -> None:
    assert charge(Unpriced(), 500, {"extract": 500}) == charge(Unpriced(), 0, {})
    assert charge(Unpriced(), 500, {}).amount_minor is None
