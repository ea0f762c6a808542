"""The two forms of a first-seen insert, and which one runs where (projections.first_seen)."""

from __future__ import annotations

import asyncio

import pytest

from projections.first_seen import Copies, Unchecked, unchecked
from projections.ledger.projection import APPLY_JOBS

CLAUSE = "ON CONFLICT (api, job_id) DO NOTHING"


def test_the_plain_form_is_the_statement_without_its_clause() -> None:
    insert = Unchecked.of(f"INSERT INTO t SELECT * FROM s {CLAUSE} RETURNING api", CLAUSE)
    assert insert.checked == f"INSERT INTO t SELECT * FROM s {CLAUSE} RETURNING api"
    assert insert.plain == "INSERT INTO t SELECT * FROM s  RETURNING api"
    assert CLAUSE in APPLY_JOBS.checked and "ON CONFLICT (api, job_id)" not in APPLY_JOBS.plain


@pytest.mark.parametrize("sql", ["INSERT INTO t SELECT * FROM s", f"{CLAUSE}; {CLAUSE}"])
def test_a_statement_must_hold_its_clause_once(sql: str) -> None:
    with pytest.raises(ValueError, match="must appear once"):
        Unchecked.of(sql, CLAUSE)


async def test_checked_unless_unchecked_and_unchecked_reaches_the_tasks_started_within() -> None:
    insert = Unchecked.of(f"INSERT {CLAUSE}", CLAUSE)

    async def in_a_task() -> str:
        return insert.sql

    assert insert.sql == insert.checked
    with unchecked():
        assert insert.sql == insert.plain
        assert await asyncio.ensure_future(in_a_task()) == insert.plain  # the fold's apply runs as such a task
    assert insert.sql == insert.checked
    assert await asyncio.ensure_future(in_a_task()) == insert.checked


def test_copies_are_expected_for_a_while_after_one_was_seen() -> None:
    assert not Copies().expected()
    copies = Copies(quiet_seconds=3600)
    copies.seen()
    assert copies.expected()
    brief = Copies(quiet_seconds=0)
    brief.seen()
    assert not brief.expected()
