"""Export the jobs topic for analysts: one row per JobCompleted, streamed batch by batch to JSON lines, CSV or
Parquet, never holding the export in memory.

The window is by log time (the broker's timestamp, as in the ledger's `logged_at`): `since` inclusive, `until`
exclusive. Start offsets come from the log's time index, the stop offsets too (or the high watermarks), so the
read is bounded up front; records inside that range whose timestamp still falls outside the window (producer
clocks disagree a little) are left out and counted. The log is exported as it is: a job published twice
appears twice, with the same `event_id`, which is the key to deduplicate on.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from events.codec import DecodeError
from events.envelope import fact_id
from events.jobs import JobCompleted
from events.registry import REGISTRY
from events.topics import Topics
from jobmeter.settings import Settings
from projections.log import LogReader
from projections.records import Record, logged_at

Row = dict[str, Any]
Progress = Callable[[int, int], None]  # (records read, records in range)

COLUMNS = ("event_id", "account_id", "api", "job_id", "channel", "mode", "completed_at", "logged_at")
PARQUET_SCHEMA = pa.schema([
    ("event_id", pa.string()),
    ("account_id", pa.string()),
    ("api", pa.string()),
    ("job_id", pa.string()),
    ("channel", pa.string()),
    ("mode", pa.string()),
    ("completed_at", pa.timestamp("us", tz="UTC")),
    ("logged_at", pa.timestamp("us", tz="UTC")),
])


@dataclass
class ExportSummary:
    rows: int = 0
    read: int = 0
    outside_window: int = 0
    other_events: int = 0  # decodable, but not a JobCompleted
    bad: Counter[str] = field(default_factory=Counter)  # undecodable records by reason (already dead-lettered)

    @property
    def skipped(self) -> int:
        return sum(self.bad.values())


def job_rows(record: Record) -> list[Row] | None:
    """The export rows of a record, one per job it carries; None for other event types. Raises DecodeError for a
    bad record."""
    if record.value is None:
        raise DecodeError("empty record value")
    envelope, event = REGISTRY.decode(record.value)
    jobs = [fact for fact in event.facts() if isinstance(fact, JobCompleted)]
    if not jobs:
        return None
    at = logged_at(record.timestamp)
    return [
        {
            "event_id": str(fact_id(envelope, job)),
            "account_id": job.account_id,
            "api": job.api,
            "job_id": job.job_id,
            "channel": job.channel,
            "mode": job.mode,
            "completed_at": job.completed_at.astimezone(UTC),
            "logged_at": at,
        }
        for job in jobs
    ]


class RowSink(Protocol):
    def write(self, rows: list[Row]) -> None: ...
    def close(self) -> None: ...


def _text(row: Row) -> dict[str, str]:
    return {k: v.isoformat() if isinstance(v, datetime) else str(v) for k, v in row.items()}


class JsonLinesSink:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, rows: list[Row]) -> None:
        self.stream.writelines(json.dumps(_text(row)) + "\n" for row in rows)

    def close(self) -> None:
        self.stream.flush()


class CsvSink:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        self.writer.writeheader()

    def write(self, rows: list[Row]) -> None:
        self.writer.writerows(_text(row) for row in rows)

    def close(self) -> None:
        self.stream.flush()


class ParquetSink:
    """Buffers `row_group_rows` rows, then writes them as one row group: memory stays bounded by that."""

    def __init__(self, path: Path, *, row_group_rows: int = 50_000) -> None:
        self.row_group_rows = row_group_rows
        self.writer = pq.ParquetWriter(str(path), PARQUET_SCHEMA)
        self.buffer: list[Row] = []

    def write(self, rows: list[Row]) -> None:
        self.buffer += rows
        while len(self.buffer) >= self.row_group_rows:
            self._flush(self.buffer[: self.row_group_rows])
            self.buffer = self.buffer[self.row_group_rows :]

    def _flush(self, rows: list[Row]) -> None:
        table = pa.Table.from_pylist(rows, schema=PARQUET_SCHEMA)
        self.writer.write_table(table, row_group_size=len(rows))

    def close(self) -> None:
        if self.buffer:
            self._flush(self.buffer)
            self.buffer = []
        self.writer.close()


async def export_jobs(
    settings: Settings,
    sink: RowSink,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> ExportSummary:
    """Write every JobCompleted logged in [since, until) to `sink` (which the caller closes)."""
    summary = ExportSummary()
    low = int(since.timestamp() * 1000) if since else None
    high = int(until.timestamp() * 1000) if until else None
    async with LogReader(settings.kafka_bootstrap_servers, max_records=settings.jobmeter_batch_max_records) as reader:
        partitions = await reader.partitions([Topics(settings.jobmeter_topic_prefix).jobs])
        ends = await reader.high_watermarks(partitions)
        start = await reader.offsets_at(partitions, since) if since else {}
        stop = ends
        if until:
            stop = {p: min(o, ends[p]) for p, o in (await reader.offsets_at(partitions, until)).items()}
        total = sum(max(0, end - start.get(p, 0)) for p, end in stop.items())
        if progress:
            progress(0, total)
        async for batch in reader.read(start, stop):
            rows = []
            for record in batch:
                if (low is not None and record.timestamp < low) or (high is not None and record.timestamp >= high):
                    summary.outside_window += 1
                    continue
                try:
                    found = job_rows(record)
                except DecodeError as error:
                    summary.bad[error.reason.split(":")[0]] += 1
                    continue
                if found is None:
                    summary.other_events += 1
                else:
                    rows += found
            sink.write(rows)
            summary.rows += len(rows)
            summary.read += len(batch)
            if progress:
                progress(summary.read, total)
    return summary
