"""The benches' read-only looks into a sandbox's projection tables (the sandbox is the bench's own): whether sampled
jobs have reached the ledger, the meter's outbox and PAYG's movements, for `jobmeter bench engine`'s latencies."""

from __future__ import annotations

import asyncpg

Key = tuple[str, str]  # (api, job_id)


# Each key probed in the primary key (a LATERAL subquery with a LIMIT is never made a join). The `IN (SELECT …
# unnest)` and `= ANY` forms took 4–13 ms a look in a `bench engine` run (pg_stat_statements): looked for ten times
# a second, ~60 µs of the engine's Postgres a job at 3,000 jobs/s. Why the planner did so is not established; a
# young table's statistics did the same to ingest's receipts (services/ledger/store.py).
_PROBE = """SELECT given.a, given.b FROM unnest($1::text[], $2::text[]) AS given(a, b),
            LATERAL (SELECT 1 FROM {table} t WHERE {match} LIMIT 1) AS found"""
_JOBS = "t.api = given.a AND t.job_id = given.b"


async def _probe(conn: asyncpg.Connection, table: str, match: str, keys: list[Key]) -> set[Key]:
    rows = await conn.fetch(_PROBE.format(table=table, match=match), [k[0] for k in keys], [k[1] for k in keys])
    return {(r["a"], r["b"]) for r in rows}


async def in_ledger(conn: asyncpg.Connection, keys: list[Key]) -> set[Key]:
    return await _probe(conn, "ledger.jobs", _JOBS, keys)


async def in_meter_outbox(conn: asyncpg.Connection, keys: list[Key]) -> set[Key]:
    """`jobs_seen` is written in the transaction that adds the job to its report in the outbox."""
    return await _probe(conn, "meter.jobs_seen", _JOBS, keys)


async def in_payg(conn: asyncpg.Connection, keys: list[Key]) -> set[Key]:
    """A job's debit is the movement `job:<api>:<job_id>`."""
    return await _probe(conn, "payg.movements", "t.movement_id = 'job:' || given.a || ':' || given.b", keys)
