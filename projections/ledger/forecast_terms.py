"""What a forecast of jobs means in money, by how the account pays: pure, no I/O.

A subscription's period includes a plan's jobs, and the jobs past them are overage at the metered price; a PAYG
account pays each job at its API surface's price, so its spend is forecast by keeping the period's mix of API
surfaces so far (a month that has run mostly cheap jobs is expected to go on doing so); an account billed
elsewhere (RapidAPI) or not registered has neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from projections.payg.rules import Prices
from projections.subscriptions.state import overage


@dataclass(frozen=True)
class Subscription:
    """A live Stripe subscription: its period, its plan's jobs and the overage price per job."""

    start: datetime
    end: datetime
    included: int
    unit_minor: Decimal
    currency: str


@dataclass(frozen=True)
class PayAsYouGo:
    prices: Prices
    currency: str


@dataclass(frozen=True)
class Unpriced:
    """Billed elsewhere (RapidAPI) or unknown: jobs are forecast, money is not."""


Terms = Subscription | PayAsYouGo | Unpriced


@dataclass(frozen=True)
class ForecastCharge:
    included_jobs: int | None
    overage_jobs: int | None
    amount_minor: int | None
    currency: str | None


def charge(terms: Terms, forecast_jobs: int, jobs_by_api: Mapping[str, int]) -> ForecastCharge:
    """The forecast charge of a period expected to hold `forecast_jobs`, given its jobs so far per API surface."""
    if isinstance(terms, Subscription):
        bill = overage(terms.included, forecast_jobs, terms.unit_minor, terms.currency)
        return ForecastCharge(bill.included, bill.overage, bill.charge_minor, bill.currency)
    if isinstance(terms, PayAsYouGo):
        to_date = sum(jobs_by_api.values())
        # A job on a surface without a price is dead-lettered by the PAYG fold, never debited: it costs nothing here.
        spent = sum(terms.prices.get(api, 0) * jobs for api, jobs in jobs_by_api.items())
        if to_date == 0:
            # No mix to keep yet: the mean price of the surfaces on offer.
            mean = Decimal(sum(terms.prices.values())) / max(len(terms.prices), 1)
            amount = Decimal(forecast_jobs) * mean
        else:
            amount = Decimal(spent) * forecast_jobs / to_date
        return ForecastCharge(None, None, int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP)), terms.currency)
    return ForecastCharge(None, None, None, None)


def spend(terms: Terms, jobs: int, jobs_by_api: Mapping[str, int], api: str | None = None) -> int | None:
    """What a period holding `jobs` jobs costs, in minor units, its mix of API surfaces kept from `jobs_by_api` (the
    jobs so far): all of it, or one surface's share when `api` is given, shared as a spend cap counts it
    (`projections.caps.rules.spent_minor`): a subscription's overage in proportion to the surface's jobs, rounded
    down; a PAYG surface's jobs at its price. None when the account's jobs are not priced here."""
    whole = charge(terms, jobs, jobs_by_api).amount_minor
    if whole is None or api is None:
        return whole
    to_date = sum(jobs_by_api.values())
    if to_date == 0:
        return 0  # no mix yet: no surface's share to speak of
    if isinstance(terms, PayAsYouGo):
        share = Decimal(terms.prices.get(api, 0) * jobs_by_api.get(api, 0)) * jobs / to_date
        return int(share.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return whole * jobs_by_api.get(api, 0) // to_date
