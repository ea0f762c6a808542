"""Folds `LegacyOperation`s with the pure `events.legacy.step`, emitting each completed job once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import asyncpg

from events.envelope import Event
from events.jobs import JobCompleted, LegacyOperation
from events.legacy import JobKey, JobProgress, job_key, step
from projections.outbox import emit
from projections.projection import Projection
from projections.records import Recorded


class LegacyNormaliser(Projection):
    name = "normalizer"
    schema = "normalizer"
    topics = ("legacy",)
    migrations = Path(__file__).parent / "migrations"
    tables = ("progress",)
    emits = True

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        ops = [item.event for item in events if isinstance(item.event, LegacyOperation)]
        if not ops:
            return
        keys = list({job_key(op) for op in ops})
        rows = await conn.fetch(
            """SELECT api, job_id, emitted, failed, pages FROM progress
               WHERE (api, job_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))""",
            [k[0] for k in keys], [k[1] for k in keys],
        )
        progress: dict[JobKey, JobProgress] = {
            (r["api"], r["job_id"]): JobProgress(emitted=r["emitted"], failed=r["failed"]) for r in rows
        }
        pages = {(r["api"], r["job_id"]): r["pages"] for r in rows}
        completed: list[JobCompleted] = []
        for op in ops:
            key = job_key(op)
            progress[key], out = step(progress.get(key), op)
            pages[key] = pages.get(key, 0) + (op.pages if op.kind == "pages_processed" else 0)
            completed += out
        await conn.execute(
            """INSERT INTO progress (api, job_id, emitted, failed, pages)
               SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::bool[], $5::bigint[])
               ON CONFLICT (api, job_id) DO UPDATE
               SET emitted = EXCLUDED.emitted, failed = EXCLUDED.failed, pages = EXCLUDED.pages""",
            [k[0] for k in progress], [k[1] for k in progress],
            [p.emitted for p in progress.values()], [p.failed for p in progress.values()],
            [pages.get(k, 0) for k in progress],
        )
        await emit(conn, completed, producer="jobmeter-normalizer")
