"""Every projection, by the name operators use. Adding one here is all it takes to make it replayable."""

from __future__ import annotations

from projections.accounts.projection import AccountRegistry
from projections.ledger.projection import UsageLedger
from projections.normalizer.projection import LegacyNormaliser
from projections.projection import Projection

PROJECTIONS: dict[str, Projection] = {
    p.name: p
    for p in (
        UsageLedger(),
        AccountRegistry(),
        LegacyNormaliser(),
    )
}


def get(name: str) -> Projection:
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise KeyError(f"no projection {name!r}; known: {', '.join(sorted(PROJECTIONS))}") from None
