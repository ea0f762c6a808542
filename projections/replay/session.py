"""One replay session: rebuild a projection into its shadow schema, verify it against live, swap it in.

The rebuild is folded by the same `Folder` as the live consumer, into `<schema>__rebuild`, reading fixed
offset ranges with a plain consumer (no group: it commits nothing and disturbs no one). Because a
projection's positions live in its own schema, "how far the rebuild has read" is always exact, so every
later step (verify, swap) just catches the shadow up to some target offsets and compares or renames.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from events.topics import Topics
from jobmeter.settings import Settings
from projections.db import quote_schema
from projections.fold import Folder
from projections.log import LogReader, Offsets
from projections.migrate import migrate
from projections.outbox import hand_over
from projections.projection import Projection
from projections.replay.compare import Difference, compare
from projections.replay.dead_letters import DeadLetterPublisher
from projections.replay.shadow import (
    FULL,
    PARTIAL,
    ReplayError,
    mark,
    read_positions,
    schema_comment,
    shadow_schema,
)

Progress = Callable[[int, int], None]  # (records done, records in total)

# Long enough for in-flight live folds to finish; short enough that a reader holding the old tables cannot
# keep the live consumer blocked behind the swap for long (the swap then rolls back and changes nothing).
SWAP_LOCK_TIMEOUT = "15s"


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
        await migrate(self.settings.database_url_for(self.projection.name), self.shadow, self.projection.migrations)
        async with self.pool.acquire() as conn:
            await mark(conn, self.shadow, marker)

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
        if self.folder.held:
            held = sorted(self.folder.held.items())
            where = "; ".join(f"{t}[{p}] at offset {h.offset}: {h.reason}" for (t, p), h in held)
            raise ReplayError(f"the log holds records this version cannot read ({where}): replay with a jobmeter that "
                              "reads them")
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
            differences = [
                d for t in self.projection.tables if (d := await compare(snapshot, self.live, self.shadow, t))
            ]
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
                await hand_over(conn, self.live, self.shadow)
                await conn.execute(f"ALTER SCHEMA {quote_schema(self.live)} RENAME TO {quote_schema(old)}")
            await conn.execute(f"ALTER SCHEMA {quote_schema(self.shadow)} RENAME TO {quote_schema(self.live)}")
            if had_live:
                await conn.execute(f"DROP SCHEMA {quote_schema(old)} CASCADE")


def _nonzero(offsets: Offsets) -> Offsets:
    return {p: o for p, o in offsets.items() if o}
