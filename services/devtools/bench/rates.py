"""What every bench measures in: events over wall time, and the peak memory of a block."""

from __future__ import annotations

import resource
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Rate:
    events: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        return {"events": self.events, "seconds": round(self.seconds, 3), "events_per_s": round(self.per_second)}


async def timed(work: Awaitable[int]) -> Rate:
    """Run `work` (which returns how many events it handled) and time it."""
    started = time.perf_counter()
    events = await work
    return Rate(events, time.perf_counter() - started)


class PeakRss:
    """Peak resident memory of this process over a block: Linux's VmHWM, reset at the start of the block
    (writing 5 to /proc/self/clear_refs); where that is refused, ru_maxrss, the peak of the whole process."""

    def __enter__(self) -> PeakRss:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM, reset at the start"
        except OSError:
            self.method = "ru_maxrss (whole process lifetime)"
        self.before_mb = _status_mb("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = _status_mb("VmHWM") if self.method.startswith("VmHWM") else None
        self.peak_mb = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def as_json(self) -> dict[str, Any]:
        before = None if self.before_mb is None else round(self.before_mb)
        return {"peak_rss_mb": round(self.peak_mb), "rss_before_mb": before, "method": self.method}


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
