"""Reconciling the RapidAPI channel: pure rules, no I/O.

Per marketplace user and month there are three numbers: the ledger's jobs that came through RapidAPI, the
units we declared to RapidAPI in `X-RapidAPI-Billing`, and the units RapidAPI's export reports. Each pair is
compared within a tolerance; a user in the export we never saw is flagged, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from events.rapidapi import DiscrepancyKind, ReconciliationDiscrepancy

_PART = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(%?)$")


@dataclass(frozen=True)
class Tolerance:
    """How far two figures may differ: `absolute` units, or `relative` (a fraction of the larger), whichever
    is more lenient when both are set. The default (0, 0) demands exact agreement."""

    absolute: int = 0
    relative: Decimal = Decimal(0)

    @classmethod
    def parse(cls, text: str) -> Tolerance:
        """`"2"` (units), `"0.5%"` (of the larger figure), or both: `"2,0.5%"`."""
        absolute, relative = 0, Decimal(0)
        for part in (p.strip() for p in text.split(",") if p.strip()):
            match = _PART.match(part)
            if match is None:
                raise ValueError(f"cannot read tolerance {part!r}: use units (2), a percentage (0.5%) or both")
            number, percent = match.groups()
            try:
                if percent:
                    relative = Decimal(number) / 100
                elif "." in number:
                    raise ValueError(f"an absolute tolerance is a whole number of units, not {number}")
                else:
                    absolute = int(number)
            except InvalidOperation:
                raise ValueError(f"cannot read tolerance {part!r}") from None
        return cls(absolute, relative)

    def allows(self, a: int, b: int) -> bool:
        difference = abs(a - b)
        return difference <= self.absolute or difference <= self.relative * max(a, b)


@dataclass(frozen=True)
class UserFigures:
    """One marketplace user's three numbers for a month. `known` is False for a user only the export names."""

    rapidapi_user: str
    account_id: str | None
    known: bool
    ledger_jobs: int
    declared_units: int
    reported_units: int


def reconcile(
    period: str, users: list[UserFigures], tolerance: Tolerance, *, export_imported: bool = True
) -> list[ReconciliationDiscrepancy]:
    """The discrepancies of one month, user by user, in a stable order.

    Without an export for the month, RapidAPI's side is unknown rather than zero: only the ledger and the
    declarations are compared.
    """
    found: list[ReconciliationDiscrepancy] = []
    for u in sorted(users, key=lambda u: u.rapidapi_user):
        kinds: list[DiscrepancyKind] = []
        if not u.known:
            kinds.append("unknown_user")
        else:
            if not tolerance.allows(u.ledger_jobs, u.declared_units):
                kinds.append("ledger_vs_declared")
            if export_imported and not tolerance.allows(u.declared_units, u.reported_units):
                kinds.append("declared_vs_reported")
            if export_imported and not tolerance.allows(u.ledger_jobs, u.reported_units):
                kinds.append("ledger_vs_reported")
        found += [
            ReconciliationDiscrepancy(
                period=period,
                rapidapi_user=u.rapidapi_user,
                account_id=u.account_id,
                ledger_jobs=u.ledger_jobs,
                declared_units=u.declared_units,
                reported_units=u.reported_units,
                kind=kind,
            )
            for kind in kinds
        ]
    return found
