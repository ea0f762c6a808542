"""Partitions a fold holds at a record it cannot read yet (a newer version, an unknown type: `NotYetReadable`).

Neither that record nor anything after it on its partition is applied, and the partition's position stays before
it, until a reader that knows the record runs: held, never skipped or dead-lettered. Kept in memory per Folder (the
stored position is what survives a restart: the next reader meets the same record first), counted in
`jobmeter_partitions_held` and named by `/healthz`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import structlog

from jobmeter import metrics
from projections.positions import Partition, Positioned, R, Runs
from projections.records import Record

log = structlog.get_logger(__name__)


class Hold(NamedTuple):
    """Where a partition is held, and why: the first record this reader cannot read yet."""

    offset: int
    reason: str


class Holds(dict[Partition, Hold]):
    def __init__(self, projection: str) -> None:
        super().__init__()
        self.projection = projection

    def covers(self, record: Positioned) -> bool:
        """Whether the record is the held one of its partition or comes after it."""
        hold = self.get((record.topic, record.partition))
        return hold is not None and record.offset >= hold.offset

    def before(self, runs: Runs[R]) -> Runs[R]:
        """Each partition's records before its hold: all of them while nothing is held (nearly always)."""
        if not self:
            return runs
        kept: dict[Partition, list[R]] = {}
        for partition, run in runs.items():
            if partition not in self:
                kept[partition] = run
            elif rest := [r for r in run if not self.covers(r)]:
                kept[partition] = rest
        return kept

    def hold(self, record: Record, reason: str) -> None:
        key = (record.topic, record.partition)
        if key not in self or record.offset < self[key].offset:
            self[key] = Hold(record.offset, reason)
            log.error("partition held: a record this reader cannot read yet (upgrade the consumer)",
                      projection=self.projection, topic=record.topic, partition=record.partition,
                      offset=record.offset, reason=reason)
        self._count()

    def release(self, partitions: Iterable[Partition]) -> None:
        """Forget the holds of partitions this process no longer reads (revoked): whoever reads them next decides."""
        for partition in partitions:
            self.pop(partition, None)
        self._count()

    def restore(self, before: dict[Partition, Hold]) -> None:
        """Back to what was held before a transaction that rolled back: its retry decides again."""
        self.clear()
        self.update(before)
        self._count()

    def _count(self) -> None:
        metrics.PARTITIONS_HELD.labels(self.projection).set(len(self))
