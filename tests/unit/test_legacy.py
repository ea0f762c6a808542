"""The normaliser's business rules: legacy operation events in, one billable job per completed job out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.jobs import JobCompleted, LegacyKind, LegacyOperation
from events.legacy import FINISHING, fold, job_key, normalise, step

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def op(
    kind: LegacyKind,
    job: str = "j1",
    *,
    api: str = "extract",
    minute: int = 0,
    pages: int = 0,
    channel: str = "direct",
    account: str = "acct_1",
) -> LegacyOperation:
    return LegacyOperation.model_validate(
        {
            "kind": kind,
            "account_id": account,
            "api": api,
            "job_id": job,
            "occurred_at": T0 + timedelta(minutes=minute),
            "pages": pages,
            "channel": channel,
        }
    )


def billed(jobs: list[JobCompleted]) -> list[tuple[str, str, str, int, str]]:
    """(api, job_id, mode, minute, channel) of each job: the parts the rules decide."""
    return [(j.api, j.job_id, j.mode, int((j.completed_at - T0) / timedelta(minutes=1)), j.channel) for j in jobs]


forty_pages = [op("pages_processed", minute=i, pages=1) for i in range(40)]

CASES = [
    (
        "a finished sync call is one sync job",
        [op("sync_call_finished", minute=3)],
        [("extract", "j1", "sync", 3, "direct")],
    ),
    ("a submitted async job bills nothing yet", [op("async_job_submitted")], []),
    (
        "an async job counts when it finishes, at the finishing time",
        [op("async_job_submitted", minute=1), op("async_job_finished", minute=9)],
        [("extract", "j1", "async", 9, "direct")],
    ),
    ("page events alone never make a job", forty_pages, []),
    (
        "forty page events then a finish are one job",
        [*forty_pages, op("async_job_finished", minute=41)],
        [("extract", "j1", "async", 41, "direct")],
    ),
    ("a failed job bills nothing", [op("async_job_submitted"), op("job_failed", minute=2)], []),
    ("a failure after the finish still bills nothing", [op("sync_call_finished"), op("job_failed", minute=1)], []),
    ("a failure before a finish bills nothing", [op("job_failed"), op("sync_call_finished", minute=1)], []),
    (
        "a failure arriving before an earlier finish bills nothing",
        [op("job_failed", minute=5), op("async_job_finished", minute=1)],
        [],
    ),
    (
        "a duplicated finish is one job",
        [op("sync_call_finished", minute=2), op("sync_call_finished", minute=2)],
        [("extract", "j1", "sync", 2, "direct")],
    ),
    (
        "two finishes of one job bill once, at the earliest",
        [op("async_job_finished", minute=7), op("async_job_finished", minute=4)],
        [("extract", "j1", "async", 4, "direct")],
    ),
    (
        "the same job id on two API surfaces is two jobs",
        [op("sync_call_finished", api="extract", minute=1), op("sync_call_finished", api="classify", minute=2)],
        [("extract", "j1", "sync", 1, "direct"), ("classify", "j1", "sync", 2, "direct")],
    ),
    (
        "the channel comes from the finishing event",
        [op("pages_processed", pages=3), op("async_job_finished", minute=1, channel="rapidapi")],
        [("extract", "j1", "async", 1, "rapidapi")],
    ),
    (
        "a failure fails only its own job on its own surface",
        [
            op("sync_call_finished", "j1", minute=1),
            op("sync_call_finished", "j2", minute=2),
            op("sync_call_finished", "j2", api="classify", minute=3),
            op("job_failed", "j2", minute=4),
        ],
        [("extract", "j1", "sync", 1, "direct"), ("classify", "j2", "sync", 3, "direct")],
    ),
]


@pytest.mark.parametrize(("rule", "ops", "expected"), CASES, ids=[case[0] for case in CASES])
def test_rule(rule: str, ops: list[LegacyOperation], expected: list[tuple[str, str, str, int, str]]) -> None:
    assert billed(normalise(ops)) == expected


def test_page_events_add_to_the_page_count_once_each() -> None:
    ops = [*forty_pages, *forty_pages[:10], op("async_job_finished", minute=41)]
    assert fold(ops)[("extract", "j1")].pages == 40


def test_a_stream_emits_a_job_once_on_its_first_finish() -> None:
    progress, out = step(None, op("async_job_submitted"))
    assert out == []
    progress, out = step(progress, op("async_job_finished", minute=5))
    assert billed(out) == [("extract", "j1", "async", 5, "direct")]
    progress, out = step(progress, op("async_job_finished", minute=5))
    assert out == [] and progress.billable


def test_a_stream_marks_a_failure_after_the_finish_for_correction() -> None:
    progress, first = step(None, op("sync_call_finished"))
    progress, after = step(progress, op("job_failed", minute=1))
    assert len(first) == 1 and after == []
    assert progress.failed_after_finish and not progress.billable


def test_a_stream_never_emits_a_job_that_failed_first() -> None:
    progress, _ = step(None, op("job_failed"))
    progress, out = step(progress, op("sync_call_finished", minute=1))
    assert out == [] and not progress.failed_after_finish


# --- property: whatever the order and the duplicates ---

KINDS: list[LegacyKind] = [
    "pages_processed",
    "sync_call_finished",
    "async_job_submitted",
    "async_job_finished",
    "job_failed",
]

operations = st.builds(
    op,
    kind=st.sampled_from(KINDS),
    job=st.sampled_from(["j1", "j2", "j3", "j4"]),
    api=st.sampled_from(["extract", "classify"]),
    minute=st.integers(0, 5),
    pages=st.integers(0, 3),
    channel=st.sampled_from(["direct", "rapidapi"]),
    account=st.sampled_from(["acct_1", "acct_2"]),
)


@st.composite
def shuffled_with_duplicates(draw: st.DrawFn) -> tuple[list[LegacyOperation], list[LegacyOperation]]:
    ops = draw(st.lists(operations, max_size=25))
    repeats = draw(st.lists(st.sampled_from(ops), max_size=10)) if ops else []
    return ops, draw(st.permutations(ops + repeats))


@given(shuffled_with_duplicates())
def test_any_order_with_duplicates_bills_each_finished_unfailed_job_once(
    case: tuple[list[LegacyOperation], list[LegacyOperation]],
) -> None:
    original, shuffled = case
    jobs = normalise(shuffled)
    keys = [(j.api, j.job_id) for j in jobs]
    failed = {job_key(o) for o in shuffled if o.kind == "job_failed"}
    finishes = {(job_key(o), FINISHING[o.kind], o.occurred_at, o.channel) for o in shuffled if o.kind in FINISHING}

    assert len(keys) == len(set(keys))
    assert not failed & set(keys)
    assert all(((j.api, j.job_id), j.mode, j.completed_at, j.channel) in finishes for j in jobs)
    assert jobs == normalise(original)
