"""The chaos client: posts jobs like a well-behaved upstream API, and remembers what was acknowledged.

A well-behaved client retries a batch until it gets an answer; what it knows afterwards (which jobs were
acknowledged, which items were refused with a 4xx) is what the invariants are checked against.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

BAD_ITEMS: list[dict[str, Any]] = [
    {"api": "teleport"},
    {"completed_at": "yesterday"},
    {"channel": "carrier-pigeon"},
    {"job_id": ""},
    {"mode": 3},
]


def is_bad(item: dict[str, Any], apis: tuple[str, ...]) -> bool:
    """Whether ingest must refuse the item (one of BAD_ITEMS applied)."""
    return (item["api"] not in apis or item["completed_at"] == "yesterday" or item["channel"] not in
            ("direct", "rapidapi") or item["job_id"] == "" or item["mode"] not in ("sync", "async"))


@dataclass
class ClientBook:
    """What the client was told: the only truth the invariants may compare the engine against."""

    acknowledged: set[tuple[str, str]] = field(default_factory=set)
    bad_sent: int = 0
    refused: int = 0
    retries: int = 0
    good_seconds: float = 0.0

    def record(self, batch: list[dict[str, Any]], answer: dict[str, Any]) -> None:
        refused = {e["index"] for e in answer.get("errors", [])}
        self.refused += len(refused)
        for index, item in enumerate(batch):
            if index not in refused:
                self.acknowledged.add((item["api"], item["job_id"]))


def make_batch(rng: random.Random, accounts: list[str], apis: tuple[str, ...], serial: int, *, size: int,
               bad_ratio: float, run: str, spread_seconds: float = 7200) -> list[dict[str, Any]]:
    """`size` jobs of random accounts, completed up to `spread_seconds` ago; about `bad_ratio` of them refusable."""
    now = datetime.now(UTC)
    batch: list[dict[str, Any]] = []
    for n in range(size):
        item = {
            "account_id": rng.choice(accounts), "api": rng.choice(apis), "job_id": f"{run}-{serial}-{n}",
            "channel": "direct", "mode": rng.choice(("sync", "async")),
            "completed_at": (now - timedelta(seconds=rng.uniform(0, spread_seconds))).isoformat(),
        }
        if rng.random() < bad_ratio:
            item.update(rng.choice(BAD_ITEMS))
        batch.append(item)
    return batch


async def post_until_answered(client: httpx.AsyncClient, batch: list[dict[str, Any]], token: str,
                              book: ClientBook, *, give_up_after: float = 120) -> None:
    """Retry on connection errors and 5xx (the server may be down); a 2xx or 4xx is an answer."""
    deadline = time.monotonic() + give_up_after
    delay = 0.2
    while True:
        try:
            response = await client.post("/v1/jobs/completed", json=batch,
                                         headers={"Authorization": f"Bearer {token}"})
            if response.status_code < 500:
                if response.status_code == 202 or response.status_code == 422:
                    book.record(batch, response.json())
                    return
                raise RuntimeError(f"unexpected answer {response.status_code}: {response.text[:200]}")
        except (httpx.TransportError, httpx.TimeoutException):
            pass
        book.retries += 1
        if time.monotonic() > deadline:
            raise RuntimeError(f"ingest unavailable for {give_up_after}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
