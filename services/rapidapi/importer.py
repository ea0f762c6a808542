"""Importing RapidAPI's usage exports: the quota export a provider downloads (CSV, or the same rows as JSON).

Columns are found by header name, never by position (docs/rapidapi.md lists the names accepted). Each readable
row becomes a RapidApiUsageReported on the `rapidapi` topic, its id derived from the file's digest and the row's
line, so importing the same file again changes nothing. A row that cannot be read is reported with its line
and reason; the others are still imported.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from events.codec import describe
from events.rapidapi import RapidApiUsageReported
from services.platform.resources import Resources

# Our field -> the header names that may carry it, in order of preference (compared after `normalise`).
COLUMNS: dict[str, tuple[str, ...]] = {
    "rapidapi_user": ("subscription_owner_user_name", "subscription_owner_username", "rapidapi_user", "username",
                      "user_name"),
    "subscription_owner_id": ("subscription_owner_id", "user_id"),
    "api_name": ("api_name", "api"),
    "plan": ("plan", "plan_name", "billing_plan", "billing_plan_name", "subscription_plan"),
    "billing_object": ("quota_object_name", "quota_object", "quota_name", "billing_object", "billing_object_name",
                       "object_name", "object"),
    "units": ("usage", "quota_usage", "usage_count", "total_usage", "units", "used", "quota_used"),
    "period": ("period", "month", "billing_period", "usage_month", "period_start", "start_date"),
}
REQUIRED = ("rapidapi_user", "api_name", "billing_object", "units")
PUBLISH_CHUNK = 500


class ExportError(ValueError):
    """The file as a whole cannot be read (not CSV/JSON, or required columns missing)."""


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


@dataclass
class ParsedExport:
    source_file: str
    digest: str
    rows: list[RapidApiUsageReported] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def normalise(header: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", header.strip().lower()).strip("_")


def column_map(headers: list[str]) -> dict[str, str]:
    """Our field -> the file's header that carries it; raises ExportError when a required one is missing."""
    by_name: dict[str, str] = {}
    for header in headers:
        by_name.setdefault(normalise(header), header)
    found = {ours: next((by_name[n] for n in names if n in by_name), None) for ours, names in COLUMNS.items()}
    missing = [f"{ours} (one of: {', '.join(COLUMNS[ours])})" for ours in REQUIRED if found[ours] is None]
    if missing:
        raise ExportError(f"missing column(s): {'; '.join(missing)}; the file has: {', '.join(headers) or 'none'}")
    return {ours: header for ours, header in found.items() if header is not None}


def parse_period(value: str) -> str:
    """`2026-10`, `2026-10-01` or an RFC 3339 time -> `2026-10`."""
    value = value.strip()
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}", value):
            return date.fromisoformat(f"{value}-01").strftime("%Y-%m")
        return (datetime.fromisoformat(value.replace("Z", "+00:00")) if "T" in value else date.fromisoformat(value)
                ).strftime("%Y-%m")
    except ValueError:
        raise ValueError(f"period {value!r} is not a month (YYYY-MM) or a date") from None


def parse_units(value: str) -> int:
    text = value.strip().replace(",", "").replace("_", "")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"usage {value!r} is not a number") from None
    if number != number.to_integral_value() or number < 0:
        raise ValueError(f"usage {value!r} is not a whole, non-negative number of units")
    return int(number)


def parse_export(data: bytes, source_file: str, period: str | None = None) -> ParsedExport:
    """Read an export (CSV, or JSON when it starts with `[` or `{`); `period` applies to rows without one."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ExportError(f"not UTF-8 text: {error}") from None
    if period is not None:
        period = parse_period(period)
    items = _json_items(text) if text.lstrip()[:1] in ("[", "{") else _csv_items(text)
    parsed = ParsedExport(source_file=Path(source_file).name or "export", digest=digest)
    maps: dict[tuple[str, ...], dict[str, str]] = {}
    for line, item in items:
        if isinstance(item, str):
            parsed.errors.append(RowError(line, item))
            continue
        try:
            keys = tuple(item)
            columns = maps[keys] if keys in maps else maps.setdefault(keys, column_map(list(keys)))
            parsed.rows.append(_row(item, columns, parsed, line, period))
        except ValueError as error:  # ExportError too: a JSON item may lack a column the others have
            parsed.errors.append(RowError(line, str(error)))
    return parsed


def _row(item: dict[str, Any], columns: dict[str, str], parsed: ParsedExport, line: int,
         period: str | None) -> RapidApiUsageReported:
    values = {ours: ("" if item.get(header) is None else str(item[header]).strip()) for ours, header in columns.items()}
    empty = [ours for ours in REQUIRED if not values[ours]]
    if empty:
        raise ValueError(f"empty {', '.join(columns[e] for e in empty)}")
    row_period = parse_period(values["period"]) if values.get("period") else None
    if row_period and period and row_period != period:
        raise ValueError(f"row is for {row_period}, not the --period {period}")
    if not (row_period or period):
        raise ValueError("no period: the file has no period column; pass --period YYYY-MM")
    try:
        return RapidApiUsageReported(
            period=row_period or period,
            rapidapi_user=values["rapidapi_user"],
            subscription_owner_id=values.get("subscription_owner_id") or None,
            api_name=values["api_name"],
            plan=values.get("plan") or None,
            billing_object=values["billing_object"],
            units=parse_units(values["units"]),
            source_file=parsed.source_file,
            source_digest=parsed.digest,
            line=line,
        )
    except ValidationError as error:
        raise ValueError(describe(error)) from None


def _csv_items(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Rows with the line each starts on (the header is line 1); a row of the wrong width is an error."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ExportError("the file is empty") from None
    except csv.Error as error:
        raise ExportError(f"cannot read the CSV header: {error}") from None
    column_map(header)
    start = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield start, f"not valid CSV: {error}"
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not any(f.strip() for f in fields):
            continue  # a blank line carries nothing
        if len(fields) != len(header):
            yield line, f"expected {len(header)} fields, found {len(fields)}"
            continue
        yield line, dict(zip(header, fields, strict=True))


def _json_items(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Items of a JSON list (or of `rows`/`data`/`quotas` in an object), numbered from 1 as their `line`."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ExportError(f"malformed JSON: {error}") from None
    if isinstance(document, dict):
        document = next((document[k] for k in ("rows", "data", "quotas") if isinstance(document.get(k), list)), None)
    if not isinstance(document, list):
        raise ExportError("expected a JSON list of rows (or an object with a `rows`, `data` or `quotas` list)")
    for index, item in enumerate(document, start=1):
        yield index, item if isinstance(item, dict) else f"expected an object, found {type(item).__name__}"


@dataclass(frozen=True)
class ImportResult:
    source_file: str
    digest: str
    published: int
    errors: list[RowError]


async def import_export(res: Resources, path: Path, period: str | None = None) -> ImportResult:
    """Parse a file and publish its readable rows to the `rapidapi` topic; returns once Kafka has them all."""
    parsed = parse_export(await asyncio.to_thread(path.read_bytes), path.name, period)
    for start in range(0, len(parsed.rows), PUBLISH_CHUNK):
        await res.publisher.publish_many(parsed.rows[start : start + PUBLISH_CHUNK])
    return ImportResult(parsed.source_file, parsed.digest, len(parsed.rows), parsed.errors)
