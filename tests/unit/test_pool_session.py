"""The pool resets nothing on release (`projections.db.keep_session`), which is safe only while no code leaves
session state on a connection: a session-level SET, a session advisory lock, LISTEN, a temporary table, a cursor
held WITH HOLD. This scans every SQL string of the code for them; the few that run on connections of their own (or
undo themselves) are listed with why."""

from __future__ import annotations

import ast
import re

from tests.unit.test_layout import modules

SESSION_STATE = re.compile(
    r"\A\s*SET\s+(?!LOCAL\b)(SESSION\s+)?\w+"  # a statement setting a session-level value (SET LOCAL ends with the
    # transaction; `UPDATE … SET` and `DO UPDATE SET` do not start a statement)
    r"|(?i:\bpg_(try_)?advisory_lock(_shared)?\s*\()"  # a session advisory lock (_xact_ ones end with the transaction)
    r"|\A\s*(UN)?LISTEN\b"
    r"|(?i:\bCREATE\s+(GLOBAL\s+|LOCAL\s+)?TEMP(ORARY)?\s+TABLE\b)"
    r"|(?i:\bWITH\s+HOLD\b)"
    r"|(?i:set_config\s*\([^)]*,\s*false\s*\))",
)

# module -> why its session state never reaches a pooled connection's next user
ALLOWED = {
    "projections.replay": "the replay guard's session lock is on a connection of its own (asyncpg.connect)",
    "projections.migrate": "the migration lock is on yoyo's own connection, closed after",
    "services.devtools.bench.ledger": "the naive fold SETs its search_path and RESETs it before release",
}


def session_state_sql() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for module in modules():
        for node in ast.walk(ast.parse(module.source)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SESSION_STATE.search(node.value):
                found.setdefault(module.name, []).append(node.value.strip()[:80])
    return found


def test_no_code_leaves_session_state_on_a_pooled_connection() -> None:
    leaks = {name: sql for name, sql in session_state_sql().items() if name not in ALLOWED}
    assert not leaks, f"session state outside a transaction, which the pool no longer resets on release: {leaks}"


def test_the_scan_finds_session_state() -> None:
    """The scan sees what it guards against (the allowed modules' statements, and forms nobody writes yet)."""
    assert set(session_state_sql()) >= set(ALLOWED)
    for sql in ("SET search_path TO payg", "SELECT pg_advisory_lock(1)", "LISTEN jobs", "CREATE TEMP TABLE t (a int)",
                "SELECT set_config('search_path', 'x', false)", "DECLARE c CURSOR WITH HOLD FOR SELECT 1"):
        assert SESSION_STATE.search(sql), sql
    for sql in ("SET LOCAL search_path TO payg", "SELECT pg_advisory_xact_lock(1)", "UPDATE t SET a = 1",
                "SELECT pg_advisory_xact_lock_shared(1)", "ON CONFLICT (a) DO UPDATE SET b = 1"):
        assert not SESSION_STATE.search(sql), sql
