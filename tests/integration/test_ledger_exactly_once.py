"""The usage ledger counts every job exactly once, through SIGKILLs of the real consumer process.

`jobmeter run ledger` runs as its own OS process and is killed with SIGKILL while it folds and while
publishing goes on; each kill is a crash at whatever instant it lands, mid-transaction included. After the
last restart the ledger must hold exactly what one uninterrupted run would: each distinct (api, job_id) once,
in the hour it completed in, and positions that end where the topic ends.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from events.jobs import JobCompleted
from events.publisher import Publisher
from events.topics import Topics, ensure_topics
from jobmeter.settings import Settings
from projections import replay
from projections.ledger.queries import late_jobs, usage
from services.devtools.sandbox import service_env

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

EVENTS = 100_000  # the figure, repeats included
REPEAT_SHARE = 0.10  # of EVENTS: the same (api, job_id) once more
RETIMED_SHARE = 0.3  # of the repeats: carrying another completed_at than the first copy
LATE = 4_000  # distinct jobs published after everything else, though they completed earlier
ACCOUNTS = 500
MIN_KILLS = 10
CHUNK = 1_000

# Fixed past dates, so the hours are the same on every run. The bulk completes in publication order, like a
# live stream; late jobs belong to the previous month (Sep 28-29) and to the first hours of Oct 1.
BULK_FROM = datetime(2026, 9, 30, 20, tzinfo=UTC)
BULK_TO = datetime(2026, 10, 2, tzinfo=UTC)
SEPTEMBER = (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))
EARLY_OCTOBER = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 1, 6, tzinfo=UTC))
EVERYTHING = (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))

JobKey = tuple[str, str]


# --- the workload and what the ledger must say about it -------------------------------------------------


@dataclass(frozen=True)
class Workload:
    bulk: list[JobCompleted]  # in publication order, repeats mixed in
    late: list[JobCompleted]  # published after the whole bulk

    def first_copies(self) -> dict[JobKey, JobCompleted]:
        """What the ledger keeps: per (api, job_id), the copy published first (one account, one partition)."""
        first: dict[JobKey, JobCompleted] = {}
        for job in [*self.bulk, *self.late]:
            first.setdefault((job.api, job.job_id), job)
        return first

    def late_keys(self) -> set[JobKey]:
        bulk = {(j.api, j.job_id) for j in self.bulk}
        return {(j.api, j.job_id) for j in self.late} - bulk


def make_workload(rng: random.Random, apis: tuple[str, ...], events: int = EVENTS) -> Workload:
    distinct = round(events * (1 - REPEAT_SHARE))
    on_time = distinct - LATE
    numbers = dict.fromkeys(apis, 0)

    def new_job(completed_at: datetime) -> JobCompleted:
        api = rng.choice(apis)
        numbers[api] += 1
        # Each API numbers its own jobs, so "job-000001" exists on every surface: a job is (api, job_id).
        return JobCompleted(
            account_id=f"acct-{rng.randrange(ACCOUNTS):03d}", api=api, job_id=f"job-{numbers[api]:06d}",
            channel=rng.choice(("direct", "rapidapi")), mode=rng.choice(("sync", "async")), completed_at=completed_at,
        )

    span = BULK_TO - BULK_FROM
    originals = [new_job(BULK_FROM + span * ((i + rng.random()) / on_time)) for i in range(on_time)]
    for i in range(LATE):
        hours = 48 if i % 2 else 6  # half in the previous month, half in hours the bulk passed long ago
        start = datetime(2026, 9, 28, tzinfo=UTC) if i % 2 else EARLY_OCTOBER[0]
        originals.append(new_job(start + timedelta(hours=hours) * rng.random()))

    def repeat_of(i: int) -> JobCompleted:
        # Half the repeats follow closely (often within the same publish_many), half come much later.
        near = rng.random() < 0.5
        job = originals[rng.randrange(max(0, i - CHUNK), i + 1) if near else rng.randrange(i + 1)]
        if rng.random() < RETIMED_SHARE:
            job = job.model_copy(update={"completed_at": job.completed_at + timedelta(hours=rng.randint(-72, 72))})
        return job

    repeats_after = Counter(rng.randrange(distinct) for _ in range(events - distinct))
    bulk: list[JobCompleted] = []
    late: list[JobCompleted] = []
    for i, job in enumerate(originals):
        phase = bulk if i < on_time else late
        phase.append(job)
        phase.extend(repeat_of(i) for _ in range(repeats_after[i]))
    return Workload(bulk, late)


def hourly_counts(jobs: Iterable[JobCompleted]) -> Counter[tuple[str, str, str, datetime]]:
    return Counter(
        (j.account_id, j.api, j.channel, j.completed_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0))
        for j in jobs
    )


def assert_same(got: Mapping[Any, Any], want: Mapping[Any, Any], what: str) -> None:
    """Like ==, but a failure names the first differing keys instead of printing two huge dicts."""
    keys = sorted(got.keys() | want.keys(), key=repr)
    differ = [(k, got.get(k), want.get(k)) for k in keys if got.get(k) != want.get(k)]
    assert not differ, f"{what}: {len(differ)} keys differ (key, got, want), first ones: {differ[:10]}"


# --- the consumer as a real process ---------------------------------------------------------------------


class LedgerProcess:
    """`python -m services.cli.main run ledger` in its own process, so a SIGKILL ends it as a crash would."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.env = {
            **service_env(settings),
            "JOBMETER_BATCH_MAX_RECORDS": str(settings.jobmeter_batch_max_records),
            "LOG_LEVEL": settings.log_level,  # not service_env's WARNING: this log's tail explains a failure
        }
        self.log_path = log_path
        self.log = log_path.open("ab")  # every run appends here; its tail explains a failure
        self.proc: asyncio.subprocess.Process | None = None
        self.kills = 0
        self.killed = asyncio.Condition()

    async def start(self) -> None:
        self.log.write(f"\n--- start {time.strftime('%H:%M:%S')}\n".encode())
        self.log.flush()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli.main", "run", "ledger",
            env=self.env, cwd=REPO, stdout=self.log, stderr=asyncio.subprocess.STDOUT,
        )

    def assert_running(self) -> None:
        assert self.proc is not None and self.proc.returncode is None, (
            f"the ledger consumer exited on its own (code {self.proc and self.proc.returncode}):\n{self.tail()}"
        )

    async def kill(self) -> None:
        self.assert_running()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        async with self.killed:
            self.kills += 1
            self.killed.notify_all()

    async def killed_at_least(self, times: int) -> None:
        async with self.killed:
            await self.killed.wait_for(lambda: self.kills >= times)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        self.log.close()


async def applied(db: asyncpg.Connection, topic: str) -> int:
    """How many records of `topic` the ledger has read, by its positions (0 before its schema exists)."""
    try:
        sql = "SELECT coalesce(sum(next_offset), 0) FROM ledger.positions WHERE topic = $1"
        return int(await db.fetchval(sql, topic))
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return 0


async def fold_open(db: asyncpg.Connection) -> bool:
    """Whether another session of this database holds a write transaction: a fold between its lock and commit."""
    return bool(
        await db.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"""
        )
    )


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.jobmeter_partitions)]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()


async def wait_until_caught_up(
    settings: Settings, db: asyncpg.Connection, consumer: LedgerProcess, topic: str, timeout: float
) -> dict[int, int]:
    ends = await end_offsets(settings, topic)
    deadline = time.monotonic() + timeout
    while await applied(db, topic) < sum(ends.values()):
        consumer.assert_running()
        assert time.monotonic() < deadline, f"not caught up within {timeout}s:\n{consumer.tail()}"
        await asyncio.sleep(0.2)
    return ends


@pytest.fixture
async def topics(settings: Settings) -> AsyncIterator[Topics]:
    """This test's topics, created up front with the configured partitions and deleted afterwards."""
    own = Topics(settings.jobmeter_topic_prefix)
    await ensure_topics(settings.kafka_bootstrap_servers, own, settings.jobmeter_partitions)
    yield own
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics(own.all())
    finally:
        await admin.close()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(settings.database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def ledger_process(settings: Settings, tmp_path: Path) -> AsyncIterator[LedgerProcess]:
    process = LedgerProcess(settings, tmp_path / "ledger.log")
    yield process
    await process.stop()
    process.close()


# --- the tests --------------------------------------------------------------------------------------------


async def test_late_jobs_land_in_the_hour_they_belong_to(
    settings: Settings, topics: Topics, db: asyncpg.Connection, ledger_process: LedgerProcess
) -> None:
    def job(job_id: str, at: str) -> JobCompleted:
        return JobCompleted(account_id="acme", api="extract", job_id=job_id, channel="direct", mode="sync",
                            completed_at=datetime.fromisoformat(at))

    async with Publisher(settings.kafka_bootstrap_servers, producer="test", topics=topics) as publisher:
        await publisher.publish_many([job("a", "2026-10-02T10:15Z"), job("b", "2026-10-02T10:20Z"),
                                      job("c", "2026-10-02T10:59Z"), job("d", "2026-09-30T23:30Z")])
        reported = datetime.now(UTC)
        await asyncio.sleep(0.05)  # log times have millisecond resolution
        await publisher.publish_many([
            job("e", "2026-09-30T23:50Z"), job("f", "2026-09-30T23:59Z"),  # the previous month, late
            job("g", "2026-10-02T08:05Z"),  # an earlier hour of the same day, late
            job("a", "2026-10-02T07:00Z"),  # a repeat, earlier than its first copy: still counted once, at 10:00
        ])
    await ledger_process.start()
    await wait_until_caught_up(settings, db, ledger_process, topics.jobs, timeout=60)

    by_hour = await usage(db, "acme", datetime(2026, 9, 30, tzinfo=UTC), datetime(2026, 10, 3, tzinfo=UTC), ["hour"])
    assert {g["hour"]: g["jobs"] for g in by_hour.groups} == {
        datetime(2026, 9, 30, 23, tzinfo=UTC): 3,
        datetime(2026, 10, 2, 8, tzinfo=UTC): 1,
        datetime(2026, 10, 2, 10, tzinfo=UTC): 3,
    }
    by_month = await usage(db, "acme", *EVERYTHING, ["month"])
    assert [(g["month"].month, g["jobs"]) for g in by_month.groups] == [(9, 3), (10, 4)]
    assert by_month.total == 7

    assert [(r["account_id"], r["api"], r["channel"], r["jobs"]) for r in await late_jobs(db, *SEPTEMBER, reported)] \
        == [("acme", "extract", "direct", 2)]
    october = await late_jobs(db, datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), reported)
    assert [r["jobs"] for r in october] == [1]


# Soak: the chaos test (tests/integration/test_chaos.py) SIGKILLs consumers under load too and checks the ledger.
@pytest.mark.soak
async def test_every_job_counts_once_through_repeated_sigkills(
    settings: Settings, topics: Topics, db: asyncpg.Connection, ledger_process: LedgerProcess
) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")  # the workload is reproducible from it; kill instants are not
    rng = random.Random(seed)
    workload = make_workload(rng, settings.jobmeter_apis)
    chunks = [workload.bulk[i : i + CHUNK] for i in range(0, len(workload.bulk), CHUNK)]
    first_late_chunk = len(chunks)
    chunks += [workload.late[i : i + CHUNK] for i in range(0, len(workload.late), CHUNK)]
    reported: list[datetime] = []  # when the last on-time job was in Kafka

    async def publish() -> None:
        # Paced to last about as long as the kills (a restart waits ~10 s for the dead member's session to
        # expire), and never more than one kill's share ahead, so the kills always land while publishing goes on.
        async with Publisher(settings.kafka_bootstrap_servers, producer="test", topics=topics) as publisher:
            for n, chunk in enumerate(chunks):
                await ledger_process.killed_at_least(n * MIN_KILLS // len(chunks))
                if n == first_late_chunk:
                    reported.append(datetime.now(UTC))
                    await asyncio.sleep(0.05)  # log times have millisecond resolution
                await publisher.publish_many(chunk)
                await asyncio.sleep(rng.uniform(0.6, 1.6))

    async def kill_while_it_works() -> list[bool]:
        """Restart, wait until the process is folding, kill it a random moment later; note if a fold was open."""
        mid_fold: list[bool] = []
        while ledger_process.kills < MIN_KILLS:
            before = await applied(db, topics.jobs)
            await ledger_process.start()
            deadline = time.monotonic() + 60
            while await applied(db, topics.jobs) == before:
                ledger_process.assert_running()
                assert time.monotonic() < deadline, f"no progress after a restart:\n{ledger_process.tail()}"
                await asyncio.sleep(0.05)
            await asyncio.sleep(rng.uniform(0, 0.6))
            mid_fold.append(await fold_open(db))
            await ledger_process.kill()
        return mid_fold

    started = time.monotonic()
    publishing = asyncio.create_task(publish())
    try:
        mid_fold = await kill_while_it_works()
        killed = time.monotonic()
        await ledger_process.start()
        await publishing
    finally:
        publishing.cancel()
    ends = await wait_until_caught_up(settings, db, ledger_process, topics.jobs, timeout=90)
    await ledger_process.stop()
    print(
        f"{ledger_process.kills} kills ({sum(mid_fold)} with a fold transaction open) in {killed - started:.0f}s, "
        f"caught up {time.monotonic() - killed:.0f}s later"
    )
    assert ledger_process.kills >= MIN_KILLS
    assert sum(ends.values()) == EVENTS

    first = workload.first_copies()
    # ledger.jobs: one row per distinct job, the copy that was published first.
    rows = await db.fetch("SELECT api, job_id, account_id, channel, mode, completed_at FROM ledger.jobs")
    in_ledger, distinct = len(rows), len(first)
    assert in_ledger == distinct, f"{in_ledger} rows in ledger.jobs for {distinct} distinct jobs"
    assert_same(
        {(r["api"], r["job_id"]): (r["account_id"], r["channel"], r["mode"], r["completed_at"]) for r in rows},
        {key: (j.account_id, j.channel, j.mode, j.completed_at) for key, j in first.items()},
        "ledger.jobs",
    )

    # The counts, per hour and through the query API: per account and API, and in total.
    hourly = await db.fetch("SELECT account_id, api, channel, hour, jobs FROM ledger.hourly")
    assert_same(
        {(r["account_id"], r["api"], r["channel"], r["hour"]): r["jobs"] for r in hourly},
        hourly_counts(first.values()),
        "ledger.hourly",
    )
    per_account_api = await usage(db, None, *EVERYTHING, ["account", "api"])
    assert per_account_api.total == len(first)
    assert_same(
        {(g["account"], g["api"]): g["jobs"] for g in per_account_api.groups},
        Counter((j.account_id, j.api) for j in first.values()),
        "usage by account and api",
    )

    # Late jobs sit in the hours they completed in, and are the ones `late_jobs` reports as late.
    late = [first[key] for key in workload.late_keys()]
    for window in (SEPTEMBER, EARLY_OCTOBER):
        in_window = [j for j in late if window[0] <= j.completed_at < window[1]]
        assert in_window
        assert_same(
            {(r["account_id"], r["api"], r["channel"]): r["jobs"] for r in await late_jobs(db, *window, reported[0])},
            Counter((j.account_id, j.api, j.channel) for j in in_window),
            f"late jobs in {window[0]:%b %d}..{window[1]:%b %d %H:%M}",
        )

    # Positions end exactly where the topic ends; nothing was dead-lettered.
    stored = await db.fetch("SELECT partition, next_offset FROM ledger.positions WHERE topic = $1", topics.jobs)
    assert {r["partition"]: r["next_offset"] for r in stored} == ends
    assert sum((await end_offsets(settings, topics.deadletters)).values()) == 0

    # And a rebuild from the log, after all of that, is row for row the live ledger.
    await replay.rebuild(settings, "ledger")
    assert await replay.verify(settings, "ledger") == []


async def stale_migration_locks(db: asyncpg.Connection) -> dict[str, int]:
    """Rows left in yoyo's lock tables, per schema (a row there blocks every migration of that schema)."""
    schemas = await db.fetch("SELECT table_schema FROM information_schema.tables WHERE table_name = 'yoyo_lock'")
    counts = {}
    for schema in (r["table_schema"] for r in schemas):
        counts[schema] = await db.fetchval(f'SELECT count(*) FROM "{schema}".yoyo_lock')
    return {schema: n for schema, n in counts.items() if n}


async def test_a_consumer_killed_while_migrating_starts_again(
    settings: Settings, topics: Topics, db: asyncpg.Connection, ledger_process: LedgerProcess
) -> None:
    # Kill the process at the moment it holds the migration lock of its first schema; a few tries, since the
    # lock is held for a fraction of a second (a lock that dies with its session would never be seen stale).
    for _ in range(5):
        await ledger_process.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if await db.fetchval("SELECT count(*) FROM ledger.yoyo_lock"):
                    break
            except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
                pass
        await ledger_process.kill()
        if await stale_migration_locks(db):
            break

    await ledger_process.start()
    job = JobCompleted(account_id="acme", api="extract", job_id="after-the-crash", channel="direct", mode="sync",
                       completed_at=datetime(2026, 10, 2, 9, tzinfo=UTC))
    async with Publisher(settings.kafka_bootstrap_servers, producer="test", topics=topics) as publisher:
        await publisher.publish(job)
    await wait_until_caught_up(settings, db, ledger_process, topics.jobs, timeout=60)
    assert await db.fetchval("SELECT sum(jobs) FROM ledger.hourly") == 1
