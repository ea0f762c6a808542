"""Admission: ingest stops taking jobs while a consumer of them is too far behind (JOBMETER_INGEST_MAX_LAG).

Without it, ingest takes whatever arrives and a consumer that cannot keep up falls further behind for as long as
the load lasts: every job is still billed, but ever later (at 10k jobs/s on two cores the time from the 202 to the
ledger grew past five seconds in `jobmeter bench engine`). With it, a batch that arrives while the furthest-behind
consumer has more than the bound left to fold is answered 503 with Retry-After, before its body is read: nothing
of it is taken, the client sends it again later, and the time from a 202 to every consumer having folded the job
stays bounded by what the consumers can fold of the bound.

The lag is read in the background (every JOBMETER_INGEST_LAG_INTERVAL_SECONDS): the jobs topic's ends against the
positions each job-reading projection stored with its rows. That counts records, and a record holds one job or
many (ingest publishes a request's jobs as one record per account), while the bound is in jobs: the records are
counted as jobs at the jobs per record this process published lately (`Published`, `JobsPerRecord`). A projection
that has stored no position is not deployed here and does not count; a reading that cannot be taken (Kafka or
Postgres away) or is stale admits everything, so admission never stops ingest on what it cannot see (the publish
answers 503 on its own then).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg
import structlog

from jobmeter import metrics
from projections.catalog import PROJECTIONS
from projections.log import LogError, LogReader
from projections.positions import behind
from projections.replay.shadow import read_positions
from services.platform.poll import PollPolicy, poll
from services.platform.resources import Resources

log = structlog.get_logger(__name__)

# A reading older than this many intervals is not acted on: the watch has stopped reading.
STALE_INTERVALS = 10
JOB_READERS = tuple(p for p in PROJECTIONS.values() if "jobs" in p.topics)


@dataclass
class Published:
    """Jobs and records this process has published to the jobs topic: two additions per request, none per job."""

    jobs: int = 0
    records: int = 0

    def add(self, jobs: int, records: int) -> None:
        self.jobs += jobs
        self.records += records


# What ingest in this process published (services.ledger.ingest adds to it after each publish); process-wide like
# the metrics, since the publisher is, and read by the admission of the HTTP app it serves.
PUBLISHED = Published()


@dataclass
class JobsPerRecord:
    """Jobs per record of what this process published since the previous reading.

    The last interval's, not the ratio since start: a lag is mostly of the latest records, and the requests' mix
    (jobs per request, accounts per request) changes with the clients. An interval with nothing published keeps
    the previous ratio (a backlog is of what was published before), and 1 until anything is published (records
    of other producers, the normalizer's outbox or kcat, hold a job each). Records of those producers in a lag are
    counted at ingest's ratio too: about, and never fewer jobs than records.
    """

    ratio: float = 1.0
    seen: tuple[int, int] = (0, 0)  # Published's jobs and records at the previous reading

    def update(self, published: Published) -> float:
        jobs, records = published.jobs - self.seen[0], published.records - self.seen[1]
        self.seen = (published.jobs, published.records)
        if records > 0:
            self.ratio = jobs / records
        return self.ratio


@dataclass(frozen=True)
class Reading:
    records: Mapping[str, int]  # projection -> records of the jobs topic it has not folded yet
    jobs_per_record: float  # what each of those records is taken to hold (JobsPerRecord)
    at: float  # time.monotonic() when read

    @property
    def behind(self) -> dict[str, int]:
        """Projection -> about how many jobs it has not folded yet."""
        return {name: round(n * self.jobs_per_record) for name, n in self.records.items()}


def refusal(reading: Reading | None, bound: int, now: float, stale_after: float) -> str | None:
    """Why ingest takes no more jobs now, or None when it does."""
    if bound <= 0 or reading is None or now - reading.at > stale_after:
        return None
    over = {name: n for name, n in reading.behind.items() if n > bound}
    if not over:
        return None
    worst = max(sorted(over), key=over.__getitem__)
    records = reading.records[worst]
    return (f"the {worst} consumer has about {over[worst]} jobs left to fold ({records} record"
            f"{'' if records == 1 else 's'} of ~{reading.jobs_per_record:.3g} jobs; bound {bound}); retry later")


@dataclass
class Admission:
    bound: int  # 0: admission is off
    interval: float
    reading: Reading | None = None
    published: Published = field(default_factory=lambda: PUBLISHED)
    per_record: JobsPerRecord = field(init=False)
    _refusing: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        # From what is published from now on: an app made in a process that published before (tests) starts at 1.
        self.per_record = JobsPerRecord(seen=(self.published.jobs, self.published.records))

    def refusal(self) -> str | None:
        return refusal(self.reading, self.bound, time.monotonic(), STALE_INTERVALS * self.interval)

    @property
    def retry_after(self) -> int:
        """Whole seconds for Retry-After: the next reading at the soonest."""
        return max(1, math.ceil(self.interval))

    def reading_of(self, records: Mapping[str, int], at: float) -> Reading:
        """Records behind per projection, read now, with what this process published since the last reading."""
        return Reading(records, self.per_record.update(self.published), at)

    def read(self, reading: Reading | None) -> None:
        self.reading = reading
        why = self.refusal()
        if (why is not None) != self._refusing:  # a line per change, not per request
            self._refusing = why is not None
            if why is not None:
                log.warning("ingest refuses jobs until the consumers catch up", reason=why)
            else:
                log.info("ingest takes jobs again", behind=dict(reading.behind) if reading else None)


async def lag_of_job_readers(res: Resources, reader: LogReader) -> dict[str, int]:
    """Records of the jobs topic each deployed job-reading projection has not folded yet."""
    jobs = res.topics.jobs
    ends = await reader.high_watermarks(await reader.partitions([jobs]))
    found: dict[str, int] = {}
    async with res.connections(timeout=res.settings.jobmeter_ingest_lag_interval_seconds * STALE_INTERVALS) as db:
        for projection in JOB_READERS:
            try:
                stored = await read_positions(await db(projection.name), projection.schema)
            except asyncpg.UndefinedTableError:
                continue  # never migrated in its database: not deployed
            if stored:
                found[projection.name] = behind(stored, ends, {jobs})
    return found


async def watch_lag(res: Resources, admission: Admission) -> None:
    """Keep `admission`'s reading fresh for as long as the process runs (a background worker of the HTTP app)."""

    async def one_pass() -> bool:
        try:
            found = await lag_of_job_readers(res, reader)
        except LogError:
            admission.read(None)  # no jobs topic yet: nothing to be behind on
            return False
        reading = admission.reading_of(found, time.monotonic())
        admission.read(reading)
        for name, n in reading.behind.items():  # the gauge is in jobs, as its name says
            metrics.CONSUMER_LAG.labels(name).set(n)
        return False

    async with LogReader(res.settings.kafka_bootstrap_servers) as reader:
        await poll("admission", one_pass, PollPolicy(idle=admission.interval, max_backoff=5.0))
