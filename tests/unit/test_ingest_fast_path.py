"""The one-pass reading of a batch of valid jobs must answer exactly as the item-by-item path, and hand anything
else to that path (which says what is wrong with each item)."""

from __future__ import annotations

import copy
import json
import pickle
import uuid
from datetime import UTC, datetime, timedelta

from events.envelope import EVENT_NAMESPACE, natural_event_id
from services.ledger.ingest import FUTURE, ItemError, read_batch, split_batch

APIS = ("extract", "classify")
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def item(job_id: str, *, api: str = "extract", at: datetime = NOW, **more: object) -> dict[str, object]:
    return {"account_id": "acme", "api": api, "job_id": job_id, "channel": "direct", "mode": "sync",
            "completed_at": at.isoformat(), **more}


def test_a_batch_reads_as_the_item_by_item_path_reads_it() -> None:
    items = [item("a"), item("b", api="classify"), item("a", mode="async"), item("c"), item("b", api="classify")]
    fast = read_batch(json.dumps(items).encode(), APIS, 10, NOW)
    assert fast is not None
    assert fast == split_batch(items, APIS, NOW)  # the same jobs, first copy kept, in the same order
    assert [(j.job_id, j.mode) for j in fast[0]] == [("a", "sync"), ("b", "sync"), ("c", "sync")] and fast[1] == 2
    assert read_batch(b"  \n" + json.dumps(items).encode(), APIS, 10, NOW) is not None  # leading whitespace


def test_a_clean_batch_and_one_late_item_read_as_the_item_by_item_path_reads_them() -> None:
    clean = [item("a"), item("b", api="classify"), item("a", api="classify"), item("c", at=NOW + timedelta(minutes=4))]
    late = [*clean, item("d", at=NOW + timedelta(minutes=5, seconds=1))]
    for items in (clean, late):
        fast = read_batch(json.dumps(items).encode(), APIS, 10, NOW)
        assert fast is not None and fast == split_batch(items, APIS, NOW)
    assert read_batch(json.dumps(late).encode(), APIS, 10, NOW) == (
        split_batch(clean, APIS, NOW)[0], 0, [ItemError(4, [FUTURE])])


def test_bad_items_are_refused_one_by_one_in_the_same_words_and_the_good_ones_kept() -> None:
    items: list[object] = [
        item("a"), item("c", api="nope"), {**item("d"), "extra": 1}, item("e", at=NOW + timedelta(minutes=6)), 3,
        item("f", at=NOW + timedelta(minutes=4)), {"account_id": "has space"}, "x", None, [], item("a"),
    ]
    fast = read_batch(json.dumps(items).encode(), APIS, 20, NOW)
    assert fast is not None
    assert fast == split_batch(items, APIS, NOW)
    jobs, repeats, errors = fast
    assert [j.job_id for j in jobs] == ["a", "f"] and repeats == 1
    assert [e.index for e in errors] == [1, 2, 3, 4, 6, 7, 8, 9]


def test_anything_but_a_json_array_within_the_limit_goes_item_by_item() -> None:
    cases = [json.dumps(item("a")), "[]", "[", "not json", '{"a": [}', "3",
             json.dumps([item(str(i)) for i in range(11)])]  # over the limit of 10
    for body in cases:
        assert read_batch(body.encode(), APIS, 10, NOW) is None, body
    assert read_batch(b"\xff\xfe[]", APIS, 10, NOW) is None  # not UTF-8


def test_natural_ids_are_uuid5_of_the_joined_parts_exactly() -> None:
    for parts in [("job", "extract", "j-1"), ("job", "classify", "a/b:c@d=e+f"), ("account", "acme"), ("é", "☃")]:
        expected = uuid.uuid5(EVENT_NAMESPACE, "\x1f".join(parts))
        assert natural_event_id(*parts) == expected and str(natural_event_id(*parts)) == str(expected)
        made = natural_event_id(*parts)
        assert made.version == 5 and made.variant == expected.variant and made.is_safe == expected.is_safe
        assert hash(made) == hash(expected) and made.bytes == expected.bytes and repr(made) == repr(expected)
        assert pickle.loads(pickle.dumps(made)) == expected and copy.deepcopy(made) == expected  # noqa: S301 (ours)
