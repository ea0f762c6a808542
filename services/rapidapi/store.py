"""The gateway's declaration claims (`rapidapi_gateway.claims`): a job is claimed before its billing header is
sent, so concurrent polls in any number of processes declare it at most once.

Not a projection: the gateway writes and releases claims itself. This module is the one place that holds their
SQL; every function takes a connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

import asyncpg

SCHEMA = "rapidapi_gateway"
MIGRATIONS = Path(__file__).parent / "claims_migrations"


class Job(Protocol):
    @property
    def api(self) -> str: ...
    @property
    def job_id(self) -> str: ...
    @property
    def count(self) -> int: ...


async def claim(
    conn: asyncpg.Connection, user: str, account_id: str, jobs: Sequence[Job], now: datetime
) -> list[tuple[str, str]]:
    """Claim the jobs no one claimed before; returns the (api, job_id) of those this call claimed."""
    rows = await conn.fetch(
        """INSERT INTO rapidapi_gateway.claims (api, job_id, rapidapi_user, account_id, units, claimed_at)
           SELECT a, j, $3, $4, u, $5 FROM unnest($1::text[], $2::text[], $6::int[]) AS x(a, j, u)
           ON CONFLICT (api, job_id) DO NOTHING RETURNING api, job_id""",
        [j.api for j in jobs], [j.job_id for j in jobs], user, account_id, now, [j.count for j in jobs],
    )
    return [(r["api"], r["job_id"]) for r in rows]


async def release(conn: asyncpg.Connection, jobs: Sequence[Job]) -> None:
    """Give up the claims on these jobs, so a later poll declares them."""
    await conn.execute(
        """DELETE FROM rapidapi_gateway.claims
           WHERE (api, job_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))""",
        [j.api for j in jobs], [j.job_id for j in jobs],
    )
