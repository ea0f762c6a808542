"""The areas' own stores (tables that are not projections), named once for the platform that migrates and prunes
them: the ingest receipts and the Stripe webhook log."""

from __future__ import annotations

from jobmeter.settings import Settings
from services.ledger import store as receipts
from services.platform.resources import Store
from services.platform.retention import Retained
from services.stripe_adapter import store as webhook_log

# Migrated by every process that opens the engine's resources, as the HTTP app writes to both.
STORES: tuple[Store, ...] = (
    Store(receipts.SCHEMA, receipts.MIGRATIONS),
    Store(webhook_log.SCHEMA, webhook_log.MIGRATIONS),
)


def retained(settings: Settings) -> list[Retained]:
    """What the HTTP app's retention worker prunes, and after how many days."""
    return [
        Retained(receipts.TABLE, settings.jobmeter_ingest_receipt_days, receipts.prune),
        Retained(webhook_log.TABLE, settings.jobmeter_webhook_log_days, webhook_log.prune),
    ]
