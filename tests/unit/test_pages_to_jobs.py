"""The page → job impact report: exact figures on a small history, bad rows by line, and the CLI."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.pages_to_jobs import app
from services.ledger.pages_to_jobs import (
    ImpactLine,
    InputFormat,
    Prices,
    RejectedRow,
    UnreadableFile,
    UsageTally,
    charge,
    format_minor,
    impact,
    parse_price,
    tally,
    usage_rows,
)

USAGE_CSV = """\
account_id,api,job_id,pages,time
acct_a,extract,j1,10,2024-03-01T10:00:00Z
acct_a,extract,j1,30,2024-03-01T10:01:00Z
acct_a,extract,j2,5,2024-03-01T11:00:00+02:00
acct_a,classify,j1,2,2024-03-01T12:00:00Z
acct_b,extract,j9,125,2024-03-02T09:00:00Z
acct_b,extract,j9,many,2024-03-02T09:00:00Z
acct_b,extract,j10,3,yesterday
acct_b,extract
acct_b,extract,"j
11",1,2024-03-02T09:30:00Z

acct_b,translate,j12,1,2024-03-02T10:00:00Z
"""

DEFAULT_PRICES = Prices(Decimal("0.0040"), Decimal("0.0500"), "usd")


def read(path: Path, fmt: InputFormat = "csv") -> tuple[UsageTally, list[RejectedRow]]:
    rejected: list[RejectedRow] = []
    with usage_rows(path, fmt) as rows:
        return tally(rows, rejected.append), rejected


@pytest.fixture
def usage_csv(tmp_path: Path) -> Path:
    path = tmp_path / "usage.csv"
    path.write_text(USAGE_CSV)
    return path


def test_jobs_are_distinct_per_account_and_api_and_pages_add_up(usage_csv: Path) -> None:
    totals, _ = read(usage_csv)
    lines, total = impact(totals, DEFAULT_PRICES)
    # j1 over two rows is one job of 40 pages; j1 on classify is a job of its own.
    assert lines == [
        ImpactLine("acct_a", "classify", pages=2, jobs=1, page_billing=1, job_billing=5),  # 0.8¢ -> 1¢
        ImpactLine("acct_a", "extract", pages=45, jobs=2, page_billing=18, job_billing=10),
        ImpactLine("acct_b", "extract", pages=125, jobs=1, page_billing=50, job_billing=5),
        ImpactLine("acct_b", "translate", pages=1, jobs=1, page_billing=0, job_billing=5),  # 0.4¢ -> 0¢
    ]
    assert total == ImpactLine("(total)", "(all)", pages=173, jobs=5, page_billing=69, job_billing=25)
    assert [line.difference for line in lines] == [4, -8, -45, 5] and total.difference == -44
    assert (totals.rows, totals.rejected) == (6, 4)


def test_bad_rows_are_reported_by_the_line_they_start_on(usage_csv: Path) -> None:
    _, rejected = read(usage_csv)
    assert [(row.line, row.reason.split(":")[0]) for row in rejected] == [
        (7, "pages"),
        (8, "time"),
        (9, "2 fields where the header has 5"),
        (10, "job_id"),  # a quoted newline: the row spans lines 10-11
    ]


def test_json_lines_read_the_same_rows_and_reject_what_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    good = {"account_id": "acct_a", "api": "extract", "job_id": "j1", "pages": 4, "time": "2024-03-01T10:00:00Z"}
    path.write_text(
        "\n".join([json.dumps(good), "{not json", "[1, 2]", json.dumps(good | {"pages": True}), json.dumps(good)])
    )
    totals, rejected = read(path, "jsonl")
    assert totals.pages == {("acct_a", "extract"): 8} and totals.job_ids == {("acct_a", "extract"): {"j1"}}
    assert [row.line for row in rejected] == [2, 3, 4]


@pytest.mark.parametrize(
    ("content", "reason"),
    [("", "no header"), ("account,api,job,pages,time\n", "the header lacks account_id, job_id")],
)
def test_a_file_without_a_usable_header_is_unreadable(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "usage.csv"
    path.write_text(content)
    with pytest.raises(UnreadableFile, match=reason):
        read(path)


@pytest.mark.parametrize(
    ("quantity", "price", "exponent", "minor"),
    [
        (1, "0.005", 2, 0),  # half a cent rounds to the even 0
        (3, "0.005", 2, 2),  # 1.5 cents rounds to the even 2
        (45, "0.0040", 2, 18),
        (2, "5", 0, 10),  # a zero-decimal currency (jpy)
        (7, "0.0001", 3, 1),  # 0.7 of a fils
        (10**12, "0.0040", 2, 400_000_000_000),
    ],
)
def test_charge_is_exact_then_rounded_half_to_even_once(quantity: int, price: str, exponent: int, minor: int) -> None:
    assert charge(quantity, Decimal(price), exponent) == minor


def test_rounding_is_on_the_account_and_api_total_not_per_row(tmp_path: Path) -> None:
    path = tmp_path / "usage.csv"
    rows = [f"acct_a,extract,j{i},1,2024-03-01T10:00:0{i}Z" for i in range(3)]
    path.write_text("\n".join(["account_id,api,job_id,pages,time", *rows]))
    lines, _ = impact(read(path)[0], Prices(Decimal("0.005"), Decimal("0"), "usd"))
    assert lines[0].page_billing == 2  # 3 × 0.5¢ = 1.5¢ -> 2¢; rounded per row it would be 0¢


@pytest.mark.parametrize("text", ["0.1e", "-0.01", "NaN", "Infinity", ""])
def test_a_price_is_a_finite_non_negative_decimal(text: str) -> None:
    with pytest.raises(ValueError, match="not a"):
        parse_price(text)


def test_amounts_display_exactly_in_the_major_unit() -> None:
    assert [format_minor(a, 2) for a in (0, 5, -8, 123456)] == ["0.00", "0.05", "-0.08", "1234.56"]
    assert format_minor(10, 0) == "10" and format_minor(1, 3) == "0.001"


def test_the_cli_prints_the_report_as_csv_and_the_bad_rows_on_stderr(usage_csv: Path) -> None:
    result = CliRunner().invoke(app, [str(usage_csv), "--format", "csv", "--price-per-job", "0.04"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "account_id,api,pages,jobs,page_billing,job_billing,difference,currency",
        "acct_a,classify,2,1,0.01,0.04,0.03,usd",
        "acct_a,extract,45,2,0.18,0.08,-0.10,usd",
        "acct_b,extract,125,1,0.50,0.04,-0.46,usd",
        "acct_b,translate,1,1,0.00,0.04,0.04,usd",
        "(total),(all),173,5,0.69,0.20,-0.49,usd",
    ]
    assert "line 7: pages" in result.stderr and "line 10: job_id" in result.stderr
    assert "read 6 rows, rejected 4" in result.stderr


def test_the_cli_json_report_keeps_money_as_exact_strings(usage_csv: Path) -> None:
    result = CliRunner().invoke(app, [str(usage_csv), "--format", "json", "--currency", "EUR"])
    report = json.loads(result.stdout)
    assert report["total"] == {
        "account_id": "(total)",
        "api": "(all)",
        "pages": 173,
        "jobs": 5,
        "page_billing": "0.69",
        "job_billing": "0.25",
        "difference": "-0.44",
        "currency": "eur",
    }
    assert (report["rows_read"], report["rows_rejected"]) == (6, 4)


@pytest.mark.parametrize(
    "args",
    [
        ["missing.csv"],
        ["{dir}"],
        ["{dir}/headless.csv"],
        ["{dir}/usage.csv", "--price-per-page", "0,004"],
        ["{dir}/usage.csv", "--currency", "dollars"],
    ],
)
def test_the_cli_exits_2_when_the_file_or_an_option_is_unusable(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "headless.csv").write_text("acct_a,extract,j1,1,2024-03-01T10:00:00Z\n")
    (tmp_path / "usage.csv").write_text(USAGE_CSV)
    result = CliRunner().invoke(app, [arg.format(dir=tmp_path) for arg in args])
    assert result.exit_code == 2


def test_the_cli_reads_json_lines_by_extension_or_when_told(tmp_path: Path) -> None:
    line = '{"account_id": "acct_a", "api": "extract", "job_id": "j1", "pages": 4, "time": "2024-03-01T10:00:00Z"}'
    (tmp_path / "usage.jsonl").write_text(line)
    (tmp_path / "usage.txt").write_text(line)
    by_extension = CliRunner().invoke(app, [str(tmp_path / "usage.jsonl"), "--format", "csv"])
    told = CliRunner().invoke(app, [str(tmp_path / "usage.txt"), "--format", "csv", "--input-format", "jsonl"])
    assert by_extension.stdout == told.stdout
    assert by_extension.stdout.splitlines()[1] == "acct_a,extract,4,1,0.02,0.05,0.03,usd"
