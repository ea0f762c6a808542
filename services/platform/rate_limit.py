"""Token buckets: one keeps a process's request rate within a budget; a bounded table of them, one per key, keeps
what each client may do (failed logins from one address) within its own."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate_per_second: float, *, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate_per_second
        self.capacity = burst if burst is not None else max(1.0, rate_per_second)
        self.clock = clock
        self._tokens = self.capacity
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def wait_time(self) -> float:
        """Seconds until one token is available (0 if one is there now); does not take it."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def spend(self) -> None:
        """Take one token now, without waiting: a cost charged after the fact (the caller checked wait_time)."""
        self._refill()
        self._tokens -= 1

    def is_full(self) -> bool:
        self._refill()
        return self._tokens >= self.capacity

    async def acquire(self) -> None:
        # One waiter at a time: callers are served in order and nobody starves under load.
        async with self._lock:
            delay = self.wait_time()
            if delay > 0:
                await asyncio.sleep(delay)
                self._refill()
            self._tokens -= 1  # may dip just below zero by clock rounding; the next wait pays it back


class BucketsByKey:
    """A TokenBucket per key, made on the first spend. At most `max_keys` are kept, so a flood of new keys costs
    bounded memory: full buckets go first (they remember nothing a new bucket would not), then the least
    recently used."""

    def __init__(self, rate_per_second: float, *, burst: float, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.rate = rate_per_second
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: str) -> bool:
        return key in self._buckets

    def wait_time(self, key: str) -> float:
        """Seconds until `key` may spend again (0 now); a key never seen waits for nothing."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.wait_time()

    def spend(self, key: str) -> None:
        bucket = self._buckets.pop(key, None) or TokenBucket(self.rate, burst=self.burst, clock=self.clock)
        bucket.spend()
        self._buckets[key] = bucket  # the most recently used last
        if len(self._buckets) > self.max_keys:
            for full in [k for k, b in self._buckets.items() if b.is_full()]:
                del self._buckets[full]
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
