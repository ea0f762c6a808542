"""Every projection, by the name operators use. Adding one here is all it takes to make it replayable."""

from __future__ import annotations

from projections.accounts.projection import AccountRegistry
from projections.caps.projection import UsageCaps
from projections.key_lifecycle.projection import KeyLifecycle
from projections.keys.projection import KeyStore
from projections.ledger.projection import UsageLedger
from projections.meter.projection import MeterReporter
from projections.normalizer.projection import LegacyNormaliser
from projections.payg.projection import PaygBalances
from projections.projection import Projection
from projections.rapidapi.projection import RapidApiChannel
from projections.subscriptions.projection import Subscriptions
from projections.webhooks.projection import WebhookOutbox

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
        UsageCaps(),
        WebhookOutbox(),
    )
}


# The names the ledger and the meter reporter had before each projection was named after its consumer
# (`jobmeter run ledger`); still accepted wherever an operator types a projection's name.
ALIASES: dict[str, str] = {"usage-ledger": "ledger", "stripe-meter": "meter"}


def get(name: str) -> Projection:
    """The projection called `name` (or by one of its former names); KeyError saying which exist otherwise."""
    try:
        return PROJECTIONS[ALIASES.get(name, name)]
    except KeyError:
        raise KeyError(f"no projection {name!r}; known: {', '.join(sorted(PROJECTIONS))}") from None
