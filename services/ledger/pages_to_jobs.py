"""Page billing against job billing: what the switch changes, per account and API, from past usage.

The input is page-era usage, one row per processing record: `account_id, api, job_id, pages, time` (time
RFC 3339 with a zone), as CSV with a header or as JSON lines. It is streamed: only the totals and the set
of job ids per account and API are held. Every row counts its pages, as page billing charged them; a job
is a distinct `(api, job_id)` of an account, however many rows report it.

Money is integer minor units. Prices are decimal strings of the major unit (`"0.0040"`); each line's
charge is computed exactly, then rounded once, ROUND_HALF_EVEN, to a minor unit on the total per account
and API. The total row adds the rounded lines, so the report sums as printed.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError, field_validator

from events.codec import describe
from events.types import AccountId, ApiName, JobId, NonNegativeInt

InputFormat = Literal["csv", "jsonl"]
COLUMNS = ("account_id", "api", "job_id", "pages", "time")
TOTAL = ("(total)", "(all)")  # not valid ids, so they never collide with a real account or API
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# ISO 4217 minor units where they are not 2 (Stripe's zero- and three-decimal currencies).
_EXPONENTS = {c: 0 for c in "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()}
_EXPONENTS |= {c: 3 for c in "bhd jod kwd omr tnd".split()}


class UnreadableFile(Exception):
    """The file cannot be opened, or has no usable header: nothing in it can be read."""


class UsageRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    account_id: AccountId
    api: ApiName
    job_id: JobId
    pages: NonNegativeInt
    time: AwareDatetime

    @field_validator("pages", mode="before")
    @classmethod
    def _whole_pages(cls, value: object) -> object:
        # Lax parsing would take `true` as 1 page and "4.0" as 4; a page count is written as digits.
        if isinstance(value, bool) or (isinstance(value, str) and not value.strip().isdigit()):
            raise ValueError("must be a whole number of pages")
        return value

    @field_validator("time", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> object:
        if not isinstance(value, str) or not _RFC3339.match(value.strip()):
            raise ValueError("must be RFC 3339 with a zone, like 2024-03-01T12:00:00Z")
        return value


@dataclass(frozen=True)
class RejectedRow:
    line: int
    reason: str


def input_format_of(path: Path) -> InputFormat:
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"


@contextmanager
def usage_rows(path: Path, fmt: InputFormat) -> Iterator[Iterator[UsageRow | RejectedRow]]:
    """The rows of a usage file, read as they are consumed; raises `UnreadableFile` before the first."""
    try:
        # utf-8-sig: spreadsheet exports start with a BOM; bad bytes fail their own row, not the file.
        handle = path.open(encoding="utf-8-sig", errors="replace", newline="")
    except OSError as exc:
        raise UnreadableFile(f"cannot open {path}: {exc.strerror or exc}") from exc
    with handle:
        yield _csv_rows(handle) if fmt == "csv" else _jsonl_rows(handle)


def _csv_rows(handle: TextIO) -> Iterator[UsageRow | RejectedRow]:
    reader = csv.reader(handle)
    try:
        header = [name.strip().lower() for name in next(reader)]
    except (StopIteration, csv.Error) as exc:
        raise UnreadableFile("no header line") from exc
    missing = [name for name in COLUMNS if name not in header]
    if len(missing) == len(COLUMNS):
        raise UnreadableFile(f"the first line is not a header naming {', '.join(COLUMNS)}")
    if missing:
        raise UnreadableFile(f"the header lacks {', '.join(missing)}; it needs {', '.join(COLUMNS)}")
    line = reader.line_num
    while True:
        start = line + 1  # a quoted field can span lines: report where the row starts
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = reader.line_num
            yield RejectedRow(start, f"not CSV: {exc}")
            continue
        line = reader.line_num
        if not any(value.strip() for value in fields):
            continue
        if len(fields) != len(header):
            yield RejectedRow(start, f"{len(fields)} fields where the header has {len(header)}")
            continue
        yield _row(start, dict(zip(header, fields, strict=True)))


def _jsonl_rows(handle: TextIO) -> Iterator[UsageRow | RejectedRow]:
    for number, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield RejectedRow(number, f"not JSON: {exc.msg}")
            continue
        yield _row(number, value) if isinstance(value, dict) else RejectedRow(number, "not a JSON object")


def _row(line: int, raw: dict[str, Any]) -> UsageRow | RejectedRow:
    try:
        return UsageRow.model_validate(raw)
    except ValidationError as error:
        return RejectedRow(line, describe(error))


UsageKey = tuple[str, str]  # (account_id, api)


@dataclass
class UsageTally:
    """Totals per account and API; job ids are a set, so a job reported over several rows counts once."""

    pages: dict[UsageKey, int] = field(default_factory=dict)
    job_ids: dict[UsageKey, set[str]] = field(default_factory=dict)
    rows: int = 0
    rejected: int = 0


def tally(rows: Iterable[UsageRow | RejectedRow], on_reject: Callable[[RejectedRow], None]) -> UsageTally:
    """Fold usage rows into totals; each rejected row goes to `on_reject` as it is met, and is counted."""
    totals = UsageTally()
    for row in rows:
        if isinstance(row, RejectedRow):
            totals.rejected += 1
            on_reject(row)
            continue
        key = (row.account_id, row.api)
        totals.rows += 1
        totals.pages[key] = totals.pages.get(key, 0) + row.pages
        totals.job_ids.setdefault(key, set()).add(row.job_id)
    return totals


@dataclass(frozen=True)
class Prices:
    per_page: Decimal
    per_job: Decimal
    currency: str

    @property
    def exponent(self) -> int:
        return _EXPONENTS.get(self.currency, 2)


def parse_price(text: str) -> Decimal:
    """A price as a decimal string of the major unit; never a float, so `0.004` stays exactly 0.004."""
    try:
        price = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal number") from None
    if not price.is_finite() or price < 0:
        raise ValueError(f"{text!r} is not a price (a finite amount, zero or more)")
    return price


def charge(quantity: int, unit_price: Decimal, exponent: int) -> int:
    """`quantity × unit_price` in minor units, rounded half to even once, on this total."""
    with localcontext() as exact:
        exact.prec = 100  # wide enough that the product is exact before the one rounding
        return int((unit_price * quantity).scaleb(exponent).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def format_minor(amount: int, exponent: int) -> str:
    """Minor units as an exact major-unit string: 1234 -> "12.34"."""
    return f"{Decimal(amount).scaleb(-exponent):.{exponent}f}"


@dataclass(frozen=True)
class ImpactLine:
    account_id: str
    api: str
    pages: int
    jobs: int
    page_billing: int  # minor units
    job_billing: int

    @property
    def difference(self) -> int:
        """What job billing charges over page billing (negative: the customer pays less)."""
        return self.job_billing - self.page_billing


def impact(totals: UsageTally, prices: Prices) -> tuple[list[ImpactLine], ImpactLine]:
    """One line per account and API, sorted, and the total line (the sum of the rounded lines)."""
    lines = []
    for (account_id, api), pages in sorted(totals.pages.items()):
        jobs = len(totals.job_ids[account_id, api])
        page_billing = charge(pages, prices.per_page, prices.exponent)
        lines.append(
            ImpactLine(account_id, api, pages, jobs, page_billing, charge(jobs, prices.per_job, prices.exponent))
        )
    sums = [sum(getattr(line, name) for line in lines) for name in ("pages", "jobs", "page_billing", "job_billing")]
    return lines, ImpactLine(*TOTAL, *sums)


def as_record(line: ImpactLine, prices: Prices) -> dict[str, str | int]:
    """A line for CSV and JSON output: amounts as exact decimal strings, never floats."""
    money = {"page_billing": line.page_billing, "job_billing": line.job_billing, "difference": line.difference}
    return {
        "account_id": line.account_id,
        "api": line.api,
        "pages": line.pages,
        "jobs": line.jobs,
        **{name: format_minor(amount, prices.exponent) for name, amount in money.items()},
        "currency": prices.currency,
    }
