"""Every projection, by the name operators use. Adding one here is all it takes to make it replayable."""

from __future__ import annotations

from projections.accounts.projection import AccountRegistry
from projections.keys.lifecycle import KeyLifecycle
from projections.keys.store import KeyStore
from projections.ledger.projection import UsageLedger
from projections.meter.projection import MeterReporter
from projections.normalizer.projection import LegacyNormaliser
from projections.payg.projection import PaygBalances
from projections.projection import Projection
from projections.rapidapi.projection import RapidApiChannel
from projections.subscriptions.projection import Subscriptions

PROJECTIONS: dict[str, Projection] = {
    p.name: p
    for p in (
        UsageLedger(),
        AccountRegistry(),
        KeyStore(),
        KeyLifecycle(),
        MeterReporter(),
        Subscriptions(),
        LegacyNormaliser(),
        PaygBalances(),
        RapidApiChannel(),
    )
}


def get(name: str) -> Projection:
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise KeyError(f"no projection {name!r}; known: {', '.join(sorted(PROJECTIONS))}") from None
