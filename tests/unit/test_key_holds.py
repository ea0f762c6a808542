"""One key state from many sources: dunning, PAYG and caps each hold or release their own hold; a key works only
while none holds it, whatever order the decisions arrive in; and events written before sources existed decode
with the source their cause implies."""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from events.keys import KeyIssued, KeyRestored, KeySuspended
from events.registry import REGISTRY
from services.keys.index import KeyIndex

AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SECRET = "jm_live_secret"


def index_with_key() -> KeyIndex:
    index = KeyIndex()
    index.apply(KeyIssued(account_id="acme", key_id="key_1", prefix="jm_live_",
                          key_hash=hashlib.sha256(SECRET.encode()).hexdigest(), issued_at=AT))
    return index


def state(index: KeyIndex, now: datetime = AT) -> str:
    found = index.check(SECRET, now)
    assert found is not None
    return found.state


DUNNING_SUSPENDS = KeySuspended(account_id="acme", source="dunning", reason="final payment failed",
                                cause="evt_1", effective_at=AT, sequence=1)
PAYG_SUSPENDS = KeySuspended(account_id="acme", source="payg", reason="payg_exhausted", cause="payg:1",
                             effective_at=AT, sequence=1)
PAYG_RESTORES = KeyRestored(account_id="acme", source="payg", reason="payg_credit", cause="payg:2",
                            effective_at=AT, sequence=2)


@pytest.mark.parametrize("order", list(itertools.permutations([DUNNING_SUSPENDS, PAYG_SUSPENDS, PAYG_RESTORES])))
def test_a_payg_restore_never_lifts_a_dunning_suspension_in_any_order(
    order: tuple[KeySuspended | KeyRestored, ...],
) -> None:
    index = index_with_key()
    for event in order:
        index.apply(event)
    found = index.check(SECRET, AT)
    assert found is not None and found.state == "suspended"
    assert found.reason == "dunning: final payment failed"
    assert [h.source for h in found.holds] == ["dunning"]


def test_every_holding_source_is_named_and_the_key_works_once_none_holds() -> None:
    index = index_with_key()
    index.apply(DUNNING_SUSPENDS)
    index.apply(PAYG_SUSPENDS)
    found = index.check(SECRET, AT)
    assert found is not None
    assert found.reason == "dunning: final payment failed; payg: payg_exhausted"
    index.apply(PAYG_RESTORES)
    index.apply(KeyRestored(account_id="acme", source="dunning", reason="paid", cause="evt_2", effective_at=AT,
                            sequence=2))
    assert state(index) == "active"


def test_an_older_decision_of_a_source_does_not_undo_its_newer_one() -> None:
    index = index_with_key()
    index.apply(PAYG_RESTORES)
    index.apply(PAYG_SUSPENDS)  # redelivered late
    assert state(index) == "active"


def test_a_cap_alone_is_capped_with_the_seconds_to_its_period_end_and_with_another_hold_is_suspended() -> None:
    index = index_with_key()
    end = AT + timedelta(hours=2, seconds=0.5)
    index.apply(KeySuspended(account_id="acme", source="cap", reason="5 of 5 jobs", cause="cap:x:1",
                             effective_at=AT, sequence=1, until=end))
    found = index.check(SECRET, AT)
    assert found is not None and found.state == "capped" and found.retry_after == 7201
    assert found.as_json()["holds"][0]["until"] == end.isoformat()
    index.apply(PAYG_SUSPENDS)
    found = index.check(SECRET, AT)
    assert found is not None and found.state == "suspended" and found.retry_after is None
    assert found.reason == "cap: 5 of 5 jobs; payg: payg_exhausted"
    # Past the period's end, before the clock's release arrives: retry at once rather than a negative wait.
    index.apply(PAYG_RESTORES)
    assert index.check(SECRET, end + timedelta(minutes=1)).retry_after == 1  # type: ignore[union-attr]


def v1(event_type: str, cause: str) -> bytes:
    """A KeySuspended/KeyRestored as it was written before sources existed."""
    return json.dumps({
        "event_id": str(uuid.uuid4()), "type": event_type, "version": 1, "occurred_at": AT.isoformat(),
        "producer": "old", "data": {"account_id": "acme", "reason": "r", "cause": cause,
                                    "effective_at": AT.isoformat(), "sequence": 3},
    }).encode()


@pytest.mark.parametrize(("event_type", "cause", "source"), [
    ("KeySuspended", "payg:3", "payg"), ("KeyRestored", "payg:3", "payg"),
    ("KeySuspended", "evt_1Abc", "dunning"), ("KeyRestored", "grace:2026-01-01T00:00:00+00:00", "dunning"),
    ("KeySuspended", "linked:cus_X", "dunning"),
])
def test_events_already_on_the_log_decode_with_the_source_their_cause_implies(
    event_type: str, cause: str, source: str,
) -> None:
    _, event = REGISTRY.decode(v1(event_type, cause))
    assert isinstance(event, KeySuspended | KeyRestored)
    assert event.source == source and event.sequence == 3 and event.cause == cause


def test_a_cap_on_one_surface_holds_that_surface_and_unnamed_checks_only() -> None:
    index = index_with_key()
    index.apply(KeySuspended(account_id="acme", source="cap", reason="hard cap reached: 2 jobs on classify",
                             cause="cap:1", effective_at=AT, sequence=1, until=AT + timedelta(days=1),
                             scope=["classify"]))
    capped = index.check(SECRET, AT, api="classify")
    assert capped is not None and capped.state == "capped" and capped.retry_after == 86400
    assert capped.as_json()["holds"][0]["scope"] == ["classify"]
    assert state(index) == "capped"  # a caller that does not name its surface is refused: the safe default
    other = index.check(SECRET, AT, api="extract")
    assert other is not None and (other.state, other.holds, other.reason) == ("active", (), None)

    # Holds of every surface (dunning, PAYG, a cap on all jobs) still stop every surface.
    index.apply(PAYG_SUSPENDS)
    other = index.check(SECRET, AT, api="extract")
    assert other is not None and other.state == "suspended" and [h.source for h in other.holds] == ["payg"]
    index.apply(PAYG_RESTORES)
    index.apply(KeySuspended(account_id="acme", source="cap", reason="hard cap reached: 9 jobs", cause="cap:2",
                             effective_at=AT, sequence=2, until=AT + timedelta(days=1)))
    assert {state_of(index, api) for api in ("extract", "classify", None)} == {"capped"}


def state_of(index: KeyIndex, api: str | None) -> str:
    found = index.check(SECRET, AT, api=api)
    assert found is not None
    return found.state


def test_a_hold_written_before_scopes_decodes_as_holding_every_surface() -> None:
    v2 = json.dumps({
        "event_id": str(uuid.uuid4()), "type": "KeySuspended", "version": 2, "occurred_at": AT.isoformat(),
        "producer": "old", "data": {"account_id": "acme", "source": "cap", "reason": "r", "cause": "cap:1",
                                    "effective_at": AT.isoformat(), "sequence": 1, "until": None},
    }).encode()
    _, event = REGISTRY.decode(v2)
    assert isinstance(event, KeySuspended) and event.scope is None
    index = index_with_key()
    index.apply(event)
    assert state_of(index, "extract") == "capped"
