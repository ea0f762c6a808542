"""Reading RapidAPI exports: columns by name, clear row errors, stable ids, the JSON variant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from events.codec import encode
from events.envelope import Envelope
from events.registry import REGISTRY
from services.rapidapi.importer import ExportError, parse_export, parse_period, parse_units

SAMPLE = Path(__file__).parents[2] / "docs" / "samples" / "rapidapi-quotas.csv"


def test_the_sample_export_is_read_by_header_names() -> None:
    parsed = parse_export(SAMPLE.read_bytes(), str(SAMPLE), "2026-10")
    assert parsed.errors == []
    assert [(r.rapidapi_user, r.api_name, r.billing_object, r.units, r.line) for r in parsed.rows] == [
        ("ann-lee", "Jobmeter Extract", "jobs", 120, 2),
        ("ann-lee", "Jobmeter Extract", "Requests", 410, 3),
        ("ann-lee", "Jobmeter Classify", "jobs", 30, 4),
        ("bolt-labs", "Jobmeter Extract", "jobs", 2250, 5),
    ]
    first = parsed.rows[0]
    assert (first.period, first.plan, first.subscription_owner_id, first.source_file) == (
        "2026-10", "PRO", "5001", "rapidapi-quotas.csv")
    _, decoded = REGISTRY.decode(encode(Envelope.wrap(first, producer="test")))
    assert decoded == first


def test_column_order_and_case_do_not_matter() -> None:
    data = b"Usage,Quota Object Name,API Name,Subscription Owner User Name,Period\n7,jobs,X,ann,2026-09-01\n"
    (row,) = parse_export(data, "q.csv").rows
    assert (row.rapidapi_user, row.units, row.period) == ("ann", 7, "2026-09")


def test_reimporting_the_same_file_gives_the_same_ids_and_another_file_other_ids() -> None:
    data = SAMPLE.read_bytes()
    a = [r.natural_id() for r in parse_export(data, "a.csv", "2026-10").rows]
    b = [r.natural_id() for r in parse_export(data, "renamed.csv", "2026-10").rows]
    c = [r.natural_id() for r in parse_export(data + b"\n", "a.csv", "2026-10").rows]
    assert a == b and len(set(a)) == 4
    assert not set(a) & set(c)


def test_malformed_rows_are_reported_with_line_and_reason_and_the_rest_imported() -> None:
    data = (
        b"subscription_owner_user_name,api_name,quota_object_name,usage,period\n"
        b"ann,Extract,jobs,10,2026-10\n"  # 2: fine
        b"bob,Extract,jobs,ten,2026-10\n"  # 3: not a number
        b"cat,Extract,jobs,1.5,2026-10\n"  # 4: not whole
        b",Extract,jobs,3,2026-10\n"  # 5: no user
        b"dan,Extract,jobs,4\n"  # 6: too few fields
        b"\n"  # 7: blank, skipped
        b"eve,Extract,jobs,5,2026-13\n"  # 8: no such month
        b"fay,Extract,jobs,5,2026-09\n"  # 9: another month than --period
        b'"gus, the second",Extract,jobs,"1,200",2026-10\n'  # 10: quoted, thousands separator
    )
    parsed = parse_export(data, "q.csv", "2026-10")
    assert [(r.rapidapi_user, r.units, r.line) for r in parsed.rows] == [("ann", 10, 2), ("gus, the second", 1200, 10)]
    reasons = {e.line: e.reason for e in parsed.errors}
    assert sorted(reasons) == [3, 4, 5, 6, 8, 9]
    assert "not a number" in reasons[3]
    assert "whole" in reasons[4]
    assert "empty subscription_owner_user_name" in reasons[5]
    assert "expected 5 fields, found 4" in reasons[6]
    assert "2026-13" in reasons[8]
    assert "not the --period 2026-10" in reasons[9]


def test_rows_without_any_period_ask_for_one() -> None:
    parsed = parse_export(SAMPLE.read_bytes(), "q.csv")
    assert parsed.rows == [] and len(parsed.errors) == 4
    assert "pass --period" in parsed.errors[0].reason


def test_a_file_without_the_required_columns_is_refused_as_a_whole() -> None:
    with pytest.raises(ExportError, match="billing_object .*quota_object_name"):
        parse_export(b"subscription_owner_user_name,api_name,usage\nann,X,1\n", "q.csv", "2026-10")
    with pytest.raises(ExportError, match="empty"):
        parse_export(b"", "q.csv")
    with pytest.raises(ExportError, match="UTF-8"):
        parse_export(b"\xff\xfe\x00bad", "q.csv")


def test_the_json_variant() -> None:
    rows = [
        {"subscription_owner_user_name": "ann", "api_name": "X", "quota_object_name": "jobs", "usage": 3},
        {"subscription_owner_user_name": "bob", "api_name": "X", "quota_object_name": "jobs", "usage": -1},
        "nonsense",
        {"subscription_owner_user_name": "cat", "api_name": "X"},
    ]
    parsed = parse_export(json.dumps({"rows": rows}).encode(), "q.json", "2026-10")
    assert [(r.rapidapi_user, r.units, r.line) for r in parsed.rows] == [("ann", 3, 1)]
    reasons = {e.line: e.reason for e in parsed.errors}
    assert sorted(reasons) == [2, 3, 4]
    assert "non-negative" in reasons[2] and "expected an object" in reasons[3] and "missing column" in reasons[4]
    with pytest.raises(ExportError, match="malformed JSON"):
        parse_export(b"[{", "q.json")


@pytest.mark.parametrize(
    ("text", "period"),
    [("2026-10", "2026-10"), ("2026-10-01", "2026-10"), ("2026-10-31T23:00:00Z", "2026-10")],
)
def test_periods(text: str, period: str) -> None:
    assert parse_period(text) == period


@pytest.mark.parametrize(("text", "units"), [("0", 0), ("12", 12), ("1,234", 1234), ("12.0", 12)])
def test_units(text: str, units: int) -> None:
    assert parse_units(text) == units
