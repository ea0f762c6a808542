"""Replay: rebuild a projection from the event log into a shadow schema, compare it, and swap it in.

The rebuild is folded by the same `Folder` as the live consumer, into `<schema>__rebuild`, reading fixed
offset ranges with a plain consumer (no group: it commits nothing and disturbs no one). Because a
projection's positions live in its own schema, "how far the rebuild has read" is always exact, so every
later step (verify, swap) just catches the shadow up to some target offsets and compares or renames.

Python entry points, each opening and closing what it needs:
- `rebuild(settings, name, since=None, progress=None)`: drop, migrate and fold `<schema>__rebuild`.
- `verify(settings, name)`: the differences between the rebuild and the live tables ([] when equal).
- `swap(settings, name)`: make the rebuild live without losing what arrives meanwhile.
`replaying(settings, name)` opens one `Replay` for several steps (the CLI runs rebuild, verify, swap).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from events.deadletters import DeadLettered
from events.publisher import Publisher
from events.topics import Topics
from jobmeter.settings import Settings
from projections import catalog
from projections.db import create_pool, quote_schema
from projections.fold import Folder
from projections.log import LogError, LogReader, Offsets
from projections.migrate import migrate
from projections.projection import Projection

Progress = Callable[[int, int], None]  # (records done, records in total)

REBUILD_SUFFIX = "__rebuild"
FULL = "jobmeter replay: full, from offset zero"
PARTIAL = "jobmeter replay: partial, since "
SAMPLE_ROWS = 5
# Long enough for in-flight live folds to finish; short enough that a reader holding the old tables cannot
# keep the live consumer blocked behind the swap for long (the swap then rolls back and changes nothing).
SWAP_LOCK_TIMEOUT = "15s"

# Projections whose schema records what was already done to the outside world beyond the shared outbox (which
# swap hands over): a swapped-in rebuild would have forgotten it and do it all again. They can be rebuilt and
# verified, not swapped. (Better declared on the Projection itself; kept here until it is.)


class ReplayError(LogError):
    """The replay cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class RebuildResult:
    projection: str
    schema: str
    since: datetime | None
    start: Offsets
    stop: Offsets  # the high watermarks taken at the start
    records: int  # records read from the log
    applied: int
    dead: int
    seconds: float

    @property
    def partial(self) -> bool:
        """A rebuild from `since` lacks everything logged before it: it is not a copy of the projection."""
        return self.since is not None


@dataclass(frozen=True)
class Difference:
    """One table (or the positions) that differs between the live projection and the rebuild."""

    table: str
    live_rows: int = 0
    rebuild_rows: int = 0
    only_live: int = 0
    only_rebuild: int = 0
    live_sample: list[dict[str, Any]] = field(default_factory=list)
    rebuild_sample: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


def shadow_schema(projection: Projection) -> str:
    return f"{projection.schema}{REBUILD_SUFFIX}"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DeadLetterPublisher:
    """The rebuild's dead-letter sink. Its letters share their event ids with the live consumer's (same
    consumer, topic, partition and offset), so a record the live consumer already refused is not a new fact."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sent = 0
        self._publisher: Publisher | None = None

    async def __call__(self, letters: Sequence[DeadLettered]) -> None:
        if self._publisher is None:  # most replays have none: connect only when one is needed
            s = self.settings
            topics = Topics(s.jobmeter_topic_prefix)
            self._publisher = Publisher(s.kafka_bootstrap_servers, producer="jobmeter-replay", topics=topics)
            await self._publisher.start()
        await self._publisher.publish_many(list(letters))
        self.sent += len(letters)

    async def close(self) -> None:
        if self._publisher is not None:
            await self._publisher.stop()


async def read_positions(conn: asyncpg.Connection, schema: str) -> Offsets:
    rows = await conn.fetch(f"SELECT topic, partition, next_offset FROM {quote_schema(schema)}.positions")  # noqa: S608
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def schema_comment(conn: asyncpg.Connection, schema: str) -> str | None:
    """The schema's comment ('' when it has none), or None when the schema does not exist."""
    row = await conn.fetchrow(
        "SELECT coalesce(obj_description(oid, 'pg_namespace'), '') AS c FROM pg_namespace WHERE nspname = $1",
        schema,
    )
    return None if row is None else str(row["c"])


class Replay:
    """Rebuild, verify and swap one projection, with one pool, one log reader and one dead-letter sink."""

    def __init__(
        self, settings: Settings, projection: Projection, pool: asyncpg.Pool, reader: LogReader,
        dead_letters: DeadLetterPublisher,
    ) -> None:
        self.settings = settings
        self.projection = projection
        self.pool = pool
        self.reader = reader
        self.dead_letters = dead_letters
        self.live = projection.schema
        self.shadow = shadow_schema(projection)
        self.topics = [Topics(settings.jobmeter_topic_prefix).name(t) for t in projection.topics]
        self.folder = Folder(projection, pool, schema=self.shadow, take_swap_lock=False, dead_letters=dead_letters)

    # -- rebuild ---------------------------------------------------------------------------------------------

    async def rebuild(self, *, since: datetime | None = None, progress: Progress | None = None) -> RebuildResult:
        """Fold `<schema>__rebuild` afresh from the log up to the high watermarks taken now.

        With `since`, only events logged at or after it: a partial rebuild, marked as such, that verify and
        swap refuse. Each partition starts at its first offset logged at/after `since` and includes everything
        after it (positions are contiguous), even a record whose producer clock was a little behind.
        """
        started = time.monotonic()
        await self._reset_shadow(FULL if since is None else f"{PARTIAL}{since.isoformat()}")
        partitions = await self.reader.partitions(self.topics)
        stop = await self.reader.high_watermarks(partitions)
        start = {p: 0 for p in partitions} if since is None else await self.reader.offsets_at(partitions, since)
        self.folder.contiguous = since is None  # a partial rebuild starts past its (empty) positions on purpose
        dead_before = self.dead_letters.sent
        records, applied = await self._fold(start, stop, progress)
        return RebuildResult(
            self.projection.name, self.shadow, since, start, stop, records, applied,
            self.dead_letters.sent - dead_before, time.monotonic() - started,
        )

    async def _reset_shadow(self, marker: str) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_schema(self.shadow)} CASCADE")
        await migrate(self.settings.database_url, self.shadow, self.projection.migrations)
        async with self.pool.acquire() as conn:
            await conn.execute(f"COMMENT ON SCHEMA {quote_schema(self.shadow)} IS {_literal(marker)}")

    async def _fold(self, start: Offsets, stop: Offsets, progress: Progress | None = None) -> tuple[int, int]:
        """Fold [start, stop) of every partition into the shadow; returns (records read, records applied)."""
        total = sum(max(0, end - start.get(p, 0)) for p, end in stop.items())
        done = applied = 0
        if progress:
            progress(done, total)
        async for batch in self.reader.read(start, stop):
            outcome = await self.folder.fold(batch)
            done += len(batch)
            applied += outcome.applied
            if progress:
                progress(done, total)
        return done, applied

    async def catch_up(self, targets: Offsets) -> int:
        """Fold the shadow from its own positions up to exactly `targets`; returns the records read."""
        async with self.pool.acquire() as conn:
            stored = await read_positions(conn, self.shadow)
        records, _ = await self._fold(stored, targets)
        return records

    async def _log_end(self) -> Offsets:
        return await self.reader.high_watermarks(await self.reader.partitions(self.topics))

    async def _require_full_rebuild(self, doing: str) -> None:
        if doing == "swap" and self.projection.not_swappable:
            raise ReplayError(f"{self.projection.name} cannot be swapped: {self.projection.not_swappable}")
        async with self.pool.acquire() as conn:
            shadow, live = await schema_comment(conn, self.shadow), await schema_comment(conn, self.live)
        if shadow is None:
            raise ReplayError(f"no rebuild of {self.projection.name} to {doing}: run `jobmeter replay` first")
        if shadow.startswith(PARTIAL):
            raise ReplayError(
                f"{self.shadow} is a partial rebuild ({shadow}); it lacks earlier events, so it cannot be used "
                f"to {doing}. Replay without --since."
            )
        if shadow != FULL:  # the marker is written once the migrations succeeded: this one never got there
            raise ReplayError(f"{self.shadow} was not set up completely; run `jobmeter replay` again")
        if live is None and doing != "swap":
            raise ReplayError(f"the live schema {self.live} does not exist: nothing to {doing} against")

    # -- verify ----------------------------------------------------------------------------------------------

    async def verify(self, *, wait_seconds: float = 60) -> list[Difference]:
        """Compare the rebuild with the live tables at the very same log positions; [] when they are equal.

        Why positions matter: live state is the fold of [0, live position) of every partition, the rebuild the
        fold of [0, its position). Compared at different positions they differ for no fault of either, e.g.
        the live consumer applied jobs published after the rebuild's high watermarks. So:
        1. wait until live has reached the rebuild's positions (the rebuild cannot be un-folded, so a live
           consumer that lags or is stopped must move first);
        2. catch the shadow up to the live positions, without blocking anyone (most of the gap);
        3. take the swap lock exclusively: in-flight live folds finish, new ones wait. Read the live positions,
           catch the shadow up to exactly them (a few records), and open a REPEATABLE READ snapshot that now
           sees both at the same positions. Release the lock: live was blocked for that short moment only;
        4. compare inside the snapshot, where the live consumer's later commits are invisible.
        """
        await self._require_full_rebuild("verify")
        await self._wait_for_live(wait_seconds)
        async with self.pool.acquire() as conn:
            await self.catch_up(await read_positions(conn, self.live))
        async with AsyncExitStack() as stack:
            snapshot = await stack.enter_async_context(self.pool.acquire())
            async with self.pool.acquire() as locker, locker.transaction():
                await locker.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.projection.name)
                await self.catch_up(await read_positions(locker, self.live))
                await stack.enter_async_context(snapshot.transaction(isolation="repeatable_read", readonly=True))
                live_at = await read_positions(snapshot, self.live)  # the first read fixes the snapshot
                shadow_at = await read_positions(snapshot, self.shadow)
            differences = [d for t in self.projection.tables if (d := await self._compare(snapshot, t))]
        if _nonzero(live_at) != _nonzero(shadow_at):  # cannot happen unless a second writer touched the shadow
            differences.append(Difference("positions", note=f"live at {live_at}, rebuild at {shadow_at}"))
        return differences

    async def _wait_for_live(self, wait_seconds: float) -> None:
        deadline = time.monotonic() + wait_seconds
        while True:
            async with self.pool.acquire() as conn:
                live, shadow = await read_positions(conn, self.live), await read_positions(conn, self.shadow)
            behind = {p: (live.get(p, 0), at) for p, at in shadow.items() if live.get(p, 0) < at}
            if not behind:
                return
            if time.monotonic() > deadline:
                lag = ", ".join(f"{t}[{n}] at {have} < {want}" for (t, n), (have, want) in sorted(behind.items()))
                raise ReplayError(
                    f"the live {self.projection.name} is behind the rebuild ({lag}) and did not catch up within "
                    f"{wait_seconds:.0f}s; is its consumer running? A fair comparison needs it at least as far."
                )
            await asyncio.sleep(0.5)

    async def _compare(self, conn: asyncpg.Connection, table: str) -> Difference | None:
        live, shadow = f"{quote_schema(self.live)}.{_ident(table)}", f"{quote_schema(self.shadow)}.{_ident(table)}"
        live_cols, shadow_cols = await _columns(conn, self.live, table), await _columns(conn, self.shadow, table)
        if live_cols != shadow_cols:
            return Difference(table, note=f"columns differ: live {live_cols}, rebuild {shadow_cols}")
        cols = ", ".join(_ident(c) for c in shadow_cols)
        live_rows = await conn.fetchval(f"SELECT count(*) FROM {live}")  # noqa: S608
        rebuild_rows = await conn.fetchval(f"SELECT count(*) FROM {shadow}")  # noqa: S608
        # EXCEPT ALL compares multisets: a row twice on one side and once on the other is a difference.
        only_live = f"SELECT {cols} FROM {live} EXCEPT ALL SELECT {cols} FROM {shadow}"  # noqa: S608
        only_rebuild = f"SELECT {cols} FROM {shadow} EXCEPT ALL SELECT {cols} FROM {live}"  # noqa: S608
        n_live = await conn.fetchval(f"SELECT count(*) FROM ({only_live}) d")  # noqa: S608
        n_rebuild = await conn.fetchval(f"SELECT count(*) FROM ({only_rebuild}) d")  # noqa: S608
        if not n_live and not n_rebuild:
            return None
        return Difference(
            table, live_rows, rebuild_rows, n_live, n_rebuild,
            await _sample(conn, only_live, cols), await _sample(conn, only_rebuild, cols),
        )

    # -- swap ------------------------------------------------------------------------------------------------

    async def swap(self) -> str:
        """Make the rebuild the live schema; returns the name the old one had just before it was dropped.

        Catch up without blocking anyone, then in one transaction: take the swap lock exclusively (in-flight live
        folds finish, new ones wait), catch up to the high watermarks read now (nothing can reach live any
        more, so nothing is missed), rename live away and the shadow to live, drop the old one, commit. The
        live consumer's waiting fold then resolves its tables (and positions) in the new schema by name, and
        skips the records the rebuild already holds.
        """
        await self._require_full_rebuild("swap")
        await self.catch_up(await self._log_end())
        old = f"{self.live}__old_{datetime.now(UTC):%Y%m%d%H%M%S}"
        try:
            await self._swap_now(old)
        except asyncpg.LockNotAvailableError:
            raise ReplayError(
                f"the swap could not get its locks within {SWAP_LOCK_TIMEOUT} (a long transaction on {self.live}'s "
                "tables?); it rolled back and changed nothing: try again"
            ) from None
        return old

    async def _swap_now(self, old: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.projection.name)
            await self.catch_up(await self._log_end())
            had_live = await schema_comment(conn, self.live) is not None
            if had_live:
                await self._hand_over_outbox(conn)
                await conn.execute(f"ALTER SCHEMA {quote_schema(self.live)} RENAME TO {quote_schema(old)}")
            await conn.execute(f"ALTER SCHEMA {quote_schema(self.shadow)} RENAME TO {quote_schema(self.live)}")
            if had_live:
                await conn.execute(f"DROP SCHEMA {quote_schema(old)} CASCADE")

    async def _hand_over_outbox(self, conn: asyncpg.Connection) -> None:
        """Mark sent in the rebuild's outbox what live already published, so the relay does not publish the
        whole history again after the swap. Matching is by event id, so this relies on emitted events having
        natural ids (as jobs do); what only the rebuild emitted (a fixed projection) stays unsent and goes out."""
        live, shadow = quote_schema(self.live), quote_schema(self.shadow)
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{live}.outbox"):
            return
        # Wait for a relay batch in flight to be marked, and keep the relay off the old rows from now on
        # (it skips locked rows): no event is published twice because of the swap.
        await conn.execute(f"SELECT 1 FROM {live}.outbox WHERE sent_at IS NULL FOR UPDATE")  # noqa: S608
        await conn.execute(
            f"""UPDATE {shadow}.outbox AS s SET sent_at = l.sent_at FROM {live}.outbox AS l
                WHERE s.event_id = l.event_id AND l.sent_at IS NOT NULL AND s.sent_at IS NULL"""  # noqa: S608
        )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _nonzero(offsets: Offsets) -> Offsets:
    return {p: o for p, o in offsets.items() if o}


async def _sample(conn: asyncpg.Connection, rows: str, order_by: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(f"SELECT * FROM ({rows}) d ORDER BY {order_by} LIMIT {SAMPLE_ROWS}")]  # noqa: S608


async def _columns(conn: asyncpg.Connection, schema: str, table: str) -> list[str]:
    rows = await conn.fetch(
        """SELECT column_name FROM information_schema.columns
           WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position""",
        schema, table,
    )
    if not rows:
        raise ReplayError(f"table {schema}.{table} does not exist")
    return [r["column_name"] for r in rows]


@asynccontextmanager
async def replaying(settings: Settings, name: str) -> AsyncIterator[Replay]:
    """One replay of `name` at a time: a second one (another operator, another host) is refused, not raced."""
    projection = catalog.get(name).configured(settings)
    guard = await asyncpg.connect(settings.database_url)
    try:
        # Two-key advisory locks are a separate key space from the one-key swap lock live folds share.
        if not await guard.fetchval("SELECT pg_try_advisory_lock(hashtext('jobmeter.replay'), hashtext($1))", name):
            raise ReplayError(f"another replay of {name} is running")
        async with AsyncExitStack() as stack:
            pool = await create_pool(settings.database_url)
            stack.push_async_callback(pool.close)
            reader = await stack.enter_async_context(
                LogReader(settings.kafka_bootstrap_servers, max_records=settings.jobmeter_batch_max_records)
            )
            dead_letters = DeadLetterPublisher(settings)
            stack.push_async_callback(dead_letters.close)
            yield Replay(settings, projection, pool, reader, dead_letters)
    finally:
        await guard.close()  # ends the session, and the guard lock with it


async def rebuild(
    settings: Settings, name: str, *, since: datetime | None = None, progress: Progress | None = None
) -> RebuildResult:
    """Rebuild projection `name` into `<schema>__rebuild` (see `Replay.rebuild`)."""
    async with replaying(settings, name) as replay:
        return await replay.rebuild(since=since, progress=progress)


async def verify(settings: Settings, name: str, *, wait_seconds: float = 60) -> list[Difference]:
    """Differences between the existing rebuild of `name` and its live tables (see `Replay.verify`)."""
    async with replaying(settings, name) as replay:
        return await replay.verify(wait_seconds=wait_seconds)


async def swap(settings: Settings, name: str) -> str:
    """Make the existing rebuild of `name` live (see `Replay.swap`); returns the old schema's last name."""
    async with replaying(settings, name) as replay:
        return await replay.swap()
