"""What a demo run found: each scenario's check, the jobs completed through the gateway, and the report tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.ledger.channels import AccountChannels


@dataclass(frozen=True)
class Check:
    """One scenario's outcome in a line: passed or not, with the figures that say so."""

    name: str
    passed: bool
    detail: str


@dataclass
class DemoResult:
    engine_url: str
    gateway_url: str
    period: str  # YYYY-MM: the month the channel report covers
    accounts: int = 0
    completed: dict[tuple[str, str], str] = field(default_factory=dict)  # (api, job_id) answered done -> account
    refused: int = 0  # jobs the gateway refused (the dunned key while suspended)
    ledger_total: int = 0
    ledger_rows: list[dict[str, Any]] = field(default_factory=list)  # api, channel, jobs
    channels: list[AccountChannels] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def check(self, name: str, passed: bool, detail: str) -> Check:
        found = Check(name, passed, detail)
        self.checks.append(found)
        return found


def money(minor: int, currency: str = "usd") -> str:
    """Integer minor units shown as `$12.34`-style text (two-decimal currencies)."""
    sign, whole = ("-" if minor < 0 else ""), abs(minor)
    symbol = "$" if currency.lower() == "usd" else f"{currency.upper()} "
    return f"{sign}{symbol}{whole // 100}.{whole % 100:02d}"
