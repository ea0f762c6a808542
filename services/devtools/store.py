"""The benches' read-only looks into a sandbox's projection tables (the sandbox is the bench's own): whether sampled
jobs have reached the ledger, the meter's outbox and PAYG's movements, for `jobmeter bench engine`'s latencies."""

from __future__ import annotations

import asyncpg

Key = tuple[str, str]  # (api, job_id)


async def in_ledger(conn: asyncpg.Connection, keys: list[Key]) -> set[Key]:
    rows = await conn.fetch(
        "SELECT api, job_id FROM ledger.jobs WHERE (api, job_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        [k[0] for k in keys], [k[1] for k in keys],
    )
    return {(r["api"], r["job_id"]) for r in rows}


async def in_meter_outbox(conn: asyncpg.Connection, keys: list[Key]) -> set[Key]:
    """`jobs_seen` is written in the transaction that adds the job to its report in the outbox."""
    rows = await conn.fetch(
        "SELECT api, job_id FROM meter.jobs_seen "
        "WHERE (api, job_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        [k[0] for k in keys], [k[1] for k in keys],
    )
    return {(r["api"], r["job_id"]) for r in rows}


async def in_payg(conn: asyncpg.Connection, keys: list[Key]) -> set[Key]:
    """A job's debit is the movement `job:<api>:<job_id>`."""
    rows = await conn.fetch(
        "SELECT movement_id FROM payg.movements WHERE movement_id = ANY($1::text[])",
        [f"job:{api}:{job_id}" for api, job_id in keys],
    )
    found: set[Key] = set()
    for r in rows:
        _, api, job_id = str(r["movement_id"]).split(":", 2)
        found.add((api, job_id))
    return found
