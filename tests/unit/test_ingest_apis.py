"""Ingest refuses a job on an API surface not configured, item by item and in a batch read in one pass, in the
words a client has always seen; the other items of the batch are accepted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from events.jobs import JobCompleted
from services.ledger.ingest import FUTURE, ItemError, read_batch, split_batch, validate_item

APIS = ("extract", "classify")
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
UNKNOWN = {"field": "api", "message": "Value error, unknown API surface 'nope'; expected one of: extract, classify"}


def item(job_id: str, *, api: str = "extract", at: datetime = NOW, **more: object) -> dict[str, object]:
    return {"account_id": "acme", "api": api, "job_id": job_id, "channel": "direct", "mode": "sync",
            "completed_at": at.isoformat(), **more}


def test_an_unknown_surface_is_refused_item_by_item_in_the_same_words() -> None:
    assert validate_item(item("a", api="nope"), APIS, NOW) == [UNKNOWN]
    assert validate_item(item("a", api="nope", at=NOW + timedelta(hours=1)), APIS, NOW) == [UNKNOWN]
    job = validate_item(item("a", api="classify"), APIS, NOW)
    assert not isinstance(job, list) and job.api == "classify"


def test_an_unknown_surface_is_listed_among_the_other_reasons_where_it_always_was() -> None:
    reasons = validate_item(item("a", api="nope", account_id="has space", mode="batch", extra=1), APIS, NOW)
    assert isinstance(reasons, list)
    assert [r["field"] for r in reasons] == ["account_id", "api", "mode", "extra"] and reasons[1] == UNKNOWN
    # A surface that is not even a name is refused for that alone, not also as unknown.
    reasons = validate_item(item("a", api="No Pe", mode="batch"), APIS, NOW)
    assert isinstance(reasons, list) and [r["field"] for r in reasons] == ["api", "mode"] and UNKNOWN not in reasons


def test_an_unknown_surface_in_a_clean_batch_is_refused_and_the_others_accepted() -> None:
    items = [item("a"), item("b", api="nope"), item("c", api="classify")]
    expected = ([JobCompleted.model_validate(items[0]), JobCompleted.model_validate(items[2])], 0,
                [ItemError(1, [UNKNOWN])])
    assert split_batch(items, APIS, NOW) == expected
    assert read_batch(json.dumps(items).encode(), APIS, 10, NOW) == expected


def test_an_unknown_surface_among_other_refusals_in_a_batch_is_said_once_and_first() -> None:
    items = [item("a", api="nope", at=NOW + timedelta(hours=1)), item("b", at=NOW + timedelta(hours=1)),
             item("c", api="nope", mode="batch"), item("a"), item("a")]
    fast = read_batch(json.dumps(items).encode(), APIS, 10, NOW)
    assert fast is not None and fast == split_batch(items, APIS, NOW)
    jobs, repeats, errors = fast
    assert [j.job_id for j in jobs] == ["a"] and repeats == 1
    assert errors[:2] == [ItemError(0, [UNKNOWN]), ItemError(1, [FUTURE])]
    assert errors[2].index == 2 and errors[2].errors[0] == UNKNOWN and errors[2].errors[1]["field"] == "mode"
