"""The normaliser: legacy operation events in, one `JobCompleted` per completed job per API surface out.

The rules, each one a row of the table in tests/unit/test_legacy.py:
- a job is `(api, job_id)`: the same job_id on two API surfaces is two jobs;
- `sync_call_finished` completes a sync job and `async_job_finished` an async one; `async_job_submitted`
  bills nothing, because an async job counts when it completes;
- `pages_processed` never creates a job; it only adds to the job's page count, kept for reports;
- a job with a `job_failed` bills nothing;
- duplicates of any event collapse: the same event seen twice counts once;
- the job carries the finishing event's account, channel and time, and its mode (sync or async).

Failure after finish. A whole history (`normalise`) is judged as a whole: a job with a `job_failed`
anywhere in it is never emitted, in whatever order its events came. A stream (`step`) cannot take back
what it has emitted: when the failure arrives after the finishing event, the job has already gone out;
`step` then marks its progress `failed_after_finish`, so the caller can raise a correction, and emits
nothing more for it. Once failed, a job is never emitted by either.

When one job has several different finishing events (a retried report at another time), a stream emits
the first to arrive; a whole history bills the earliest, so its result does not depend on arrival order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from events.jobs import JobCompleted, LegacyKind, LegacyOperation
from events.types import JobMode

JobKey = tuple[str, str]
"""`(api, job_id)`: what identifies a job."""

FINISHING: dict[LegacyKind, JobMode] = {"sync_call_finished": "sync", "async_job_finished": "async"}


def job_key(op: LegacyOperation) -> JobKey:
    return (op.api, op.job_id)


@dataclass(frozen=True)
class JobProgress:
    """What has been seen of one job on one API surface."""

    completed: JobCompleted | None = None  # from the earliest finishing event seen, failed or not
    emitted: bool = False
    failed: bool = False
    page_events: frozenset[LegacyOperation] = frozenset()  # a set, so a repeated page event counts once

    @property
    def pages(self) -> int:
        return sum(op.pages for op in self.page_events)

    @property
    def billable(self) -> bool:
        return self.completed is not None and not self.failed

    @property
    def failed_after_finish(self) -> bool:
        """Emitted by a stream, then failed: billed in error, needs a correction."""
        return self.emitted and self.failed


def step(progress: JobProgress | None, op: LegacyOperation) -> tuple[JobProgress, list[JobCompleted]]:
    """Fold one event into its job's progress (`None` for a job not seen yet); returns what to emit now.

    Emits at most one `JobCompleted` per job over its life: on its first finishing event, unless it has
    already failed. The caller keeps one progress per `job_key(op)`.
    """
    progress = progress or JobProgress()
    if op.kind == "pages_processed":
        if op in progress.page_events:
            return progress, []
        return replace(progress, page_events=progress.page_events | {op}), []
    if op.kind == "job_failed":
        return replace(progress, failed=True), []
    mode = FINISHING.get(op.kind)
    if mode is None:  # submitted: an async job is billed when it completes, not before
        return progress, []
    finished = JobCompleted(
        account_id=op.account_id,
        api=op.api,
        job_id=op.job_id,
        channel=op.channel,
        mode=mode,
        completed_at=op.occurred_at,
    )
    earliest = finished if progress.completed is None else min(progress.completed, finished, key=_order)
    emit = not progress.emitted and not progress.failed
    return replace(progress, completed=earliest, emitted=progress.emitted or emit), [finished] if emit else []


def fold(ops: Iterable[LegacyOperation]) -> dict[JobKey, JobProgress]:
    """Every job's progress over a whole history; page counts for reports come from here."""
    jobs: dict[JobKey, JobProgress] = {}
    for op in ops:
        key = job_key(op)
        jobs[key], _ = step(jobs.get(key), op)
    return jobs


def normalise(ops: Iterable[LegacyOperation]) -> list[JobCompleted]:
    """One `JobCompleted` per completed job of a whole history that never failed, oldest first.

    The result depends only on which events are in `ops`, not on their order or repetitions.
    """
    billed = [p.completed for p in fold(ops).values() if p.completed is not None and not p.failed]
    return sorted(billed, key=_order)


def _order(job: JobCompleted) -> tuple[datetime, str, str, str, str, str]:
    # Time first; the rest only breaks ties, so that equal times still give one answer.
    return (job.completed_at, job.api, job.job_id, job.mode, job.channel, job.account_id)
