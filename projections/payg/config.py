"""What the PAYG fold reads from settings: prices, the balance an account starts with, and the recharge policy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from jobmeter.settings import Settings
from projections.payg.rules import PaygPolicy, Prices, parse_prices
from projections.payg.store import Defaults


@dataclass(frozen=True)
class PaygConfig:
    prices: Prices
    defaults: Defaults
    policy: PaygPolicy

    @classmethod
    def of(cls, s: Settings) -> PaygConfig:
        return cls(
            prices=parse_prices(s.jobmeter_payg_prices),
            defaults=Defaults(
                s.jobmeter_payg_currency, s.jobmeter_payg_threshold_minor, s.jobmeter_payg_recharge_minor
            ),
            policy=PaygPolicy(
                allowance_minor=s.jobmeter_payg_allowance_minor,
                max_failures=s.jobmeter_payg_max_failures,
                backoff=timedelta(seconds=s.jobmeter_payg_backoff_seconds),
                backoff_max=timedelta(seconds=s.jobmeter_payg_backoff_max_seconds),
            ),
        )

    def check_currency(self, currency: str, what: str) -> None:
        """ValueError (the record is dead-lettered) for money in another currency than the balances are kept in."""
        expected = self.defaults.currency
        if currency != expected:
            raise ValueError(f"{what} is in {currency!r}, but PAYG balances are kept in {expected!r}")
