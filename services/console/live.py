"""The numbers the live and projections pages poll: small, cheap reads, each in its projection's own database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from projections.accounts import queries as account_queries
from projections.db import Connect
from projections.ledger import queries as ledger_queries
from projections.positions import folded
from services.console.reads import meter_totals, webhook_log


async def positions(db: Connect, schemas: list[str]) -> dict[str, int]:
    """How many records each projection has folded (the sum of its next offsets), each in its own database."""
    found: dict[str, int] = {}
    for schema in schemas:
        count = await folded(await db(schema), schema)
        if count is not None:
            found[schema] = count
    return found


async def live(db: Connect, store: asyncpg.Connection, schemas: list[str]) -> dict[str, Any]:
    """The numbers the live page polls: small, cheap queries only (`store`: the webhook log's connection)."""
    now = datetime.now(UTC)
    log = await webhook_log(store, limit=50)
    meter = await meter_totals(db)
    ledger = await db("ledger")
    return {
        "at": now.isoformat(timespec="seconds"),
        "jobs_total": await ledger_queries.total_jobs(ledger),
        "jobs_last_5_minutes": await ledger_queries.job_count(ledger, logged_after=now - timedelta(minutes=5)),
        "accounts": await account_queries.count(await db("accounts")),
        "webhooks": [
            {"id": r["stripe_event_id"], "type": r["type"], "account": r["account_id"],
             "received_at": r["received_at"].isoformat(timespec="seconds"), "simulated": r["simulated"]}
            for r in log.rows
        ] if log.available else None,
        "meter": {r["state"]: int(r["reports"]) for r in meter.rows} if meter.available else None,
        "positions": await positions(db, schemas),
    }
