"""The key check's in-memory index: sha256(secret) → key, plus the holds on each account and billing models.

Loaded from the key store and the account registry when the process starts, then kept fresh by a subscriber
on the `keys` and `accounts` topics, so a change reaches the check within a moment of reaching Kafka. The
subscriber reads those topics from the beginning, without a consumer group (every process needs every
event); folding is idempotent — a revocation is final, each source's highest `sequence` wins for its own hold
— so events the snapshot already had change nothing.

A key works only while no source (dunning, PAYG, a usage cap) holds its account. A cap is the one hold that
ends by itself (at its period's end): when caps are all that hold an account, the check says "capped" and when
to retry; any other hold makes it "suspended".
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog

from events.accounts import AccountRegistered
from events.codec import DecodeError, NotYetReadable
from events.envelope import Event
from events.keys import HoldSource, KeyIssued, KeyRestored, KeyRevoked, KeySuspended
from events.registry import REGISTRY
from events.topics import Topics
from projections.accounts import queries as accounts
from projections.keys import queries as keys
from services.platform.resources import Resources

if TYPE_CHECKING:
    from services.engine.runtime import Runtime

log = structlog.get_logger(__name__)

KeyState = Literal["active", "revoked", "suspended", "capped"]


@dataclass
class KeyEntry:
    key_id: str
    account_id: str
    key_hash: str
    revoked: bool = False


@dataclass(frozen=True)
class Suspension:
    """One source's latest decision on an account."""

    sequence: int
    suspended: bool
    reason: str
    until: datetime | None = None


@dataclass(frozen=True)
class Hold:
    source: HoldSource
    reason: str
    until: datetime | None = None


@dataclass(frozen=True)
class KeyCheck:
    account_id: str
    key_id: str
    state: KeyState
    billing_model: str | None
    reason: str | None = None
    holds: tuple[Hold, ...] = ()
    retry_after: int | None = None  # seconds, for a capped key: until its cap's period ends

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"account_id": self.account_id, "key_id": self.key_id, "state": self.state,
                                "billing_model": self.billing_model}
        if self.reason:
            body["reason"] = self.reason
        if self.holds:
            body["holds"] = [{"source": h.source, "reason": h.reason,
                              "until": h.until.isoformat() if h.until else None} for h in self.holds]
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return body


def holding(decisions: dict[HoldSource, Suspension]) -> tuple[Hold, ...]:
    """The sources that hold the account now, in source order."""
    return tuple(Hold(source, d.reason, d.until) for source, d in sorted(decisions.items()) if d.suspended)


def held_state(holds: tuple[Hold, ...], now: datetime) -> tuple[KeyState, int | None]:
    """'capped' with the seconds to wait when caps are all that hold the account; 'suspended' otherwise (another
    source's hold does not end by waiting)."""
    if all(h.source == "cap" for h in holds):
        ends = [h.until for h in holds if h.until is not None]
        wait = max(1, math.ceil((max(ends) - now).total_seconds())) if ends else None
        return "capped", wait
    return "suspended", None


@dataclass
class KeyIndex:
    by_hash: dict[str, KeyEntry] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)  # key ids; kept even if the issue has not been seen yet
    suspensions: dict[str, dict[HoldSource, Suspension]] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    ready: bool = False
    # Records a newer jobmeter wrote (a newer version, an unknown type): the index cannot know what they decided,
    # so the process reports itself unhealthy (/healthz) until it is upgraded, rather than answer as if they were
    # not there. Only the first few are kept: one is enough to say so.
    unreadable: list[str] = field(default_factory=list)

    def check(self, secret: str, now: datetime | None = None) -> KeyCheck | None:
        """The key's account and state; None for a key we do not know."""
        digest = hashlib.sha256(secret.encode()).hexdigest()
        entry = self.by_hash.get(digest)
        if entry is None or not hmac.compare_digest(entry.key_hash, digest):
            return None
        model = self.models.get(entry.account_id)
        if entry.revoked or entry.key_id in self.revoked:
            return KeyCheck(entry.account_id, entry.key_id, "revoked", model, "the key was revoked")
        holds = holding(self.suspensions.get(entry.account_id, {}))
        if holds:
            state, wait = held_state(holds, now or datetime.now(UTC))
            reason = "; ".join(f"{h.source}: {h.reason}" for h in holds)
            return KeyCheck(entry.account_id, entry.key_id, state, model, reason, holds, wait)
        return KeyCheck(entry.account_id, entry.key_id, "active", model)

    def apply(self, event: Event) -> None:
        if isinstance(event, KeyIssued):
            self.by_hash.setdefault(event.key_hash, KeyEntry(event.key_id, event.account_id, event.key_hash))
        elif isinstance(event, KeyRevoked):
            self.revoked.add(event.key_id)
        elif isinstance(event, KeySuspended):
            self.suspend(event.account_id, event.source, event.sequence, True, event.reason, event.until)
        elif isinstance(event, KeyRestored):
            self.suspend(event.account_id, event.source, event.sequence, False, event.reason)
        elif isinstance(event, AccountRegistered):
            self.models.setdefault(event.account_id, event.model)

    def suspend(self, account_id: str, source: HoldSource, sequence: int, suspended: bool, reason: str,
                until: datetime | None = None) -> None:
        """Record one source's decision unless that source already decided later; other sources are untouched."""
        decisions = self.suspensions.setdefault(account_id, {})
        current = decisions.get(source)
        if current is None or current.sequence < sequence:
            decisions[source] = Suspension(sequence, suspended, reason, until)

    async def load(self, res: Resources) -> None:
        """Fill the index from the key store and the account registry."""
        async with res.pool.acquire() as conn:
            known = await keys.key_hashes(conn)
            suspensions = await keys.suspensions(conn)
            models = await accounts.models(conn)
        for k in known:
            self.by_hash.setdefault(k["key_hash"], KeyEntry(k["key_id"], k["account_id"], k["key_hash"]))
            if k["state"] == "revoked":
                self.revoked.add(k["key_id"])
        for s in suspensions:
            self.suspend(s["account_id"], s["source"], s["sequence"], s["suspended"], s["reason"], s["until"])
        for account_id, model in models.items():
            self.models.setdefault(account_id, model)
        self.ready = True
        held = {s["account_id"] for s in suspensions if s["suspended"]}
        log.info("key index loaded", keys=len(known), held=len(held))


async def _records_of(message: Any) -> Any:
    return message.raw_message


def mount_key_index(runtime: Runtime) -> KeyIndex:
    """Declare the index's subscriber on the runtime's broker and load the index when the runtime opens."""
    index = KeyIndex()
    topics = Topics(runtime.settings.jobmeter_topic_prefix)
    subscriber = runtime.broker.subscriber(
        topics.name("keys"), topics.name("accounts"),
        batch=True, max_records=1000, batch_timeout_ms=20, auto_offset_reset="earliest",
        decoder=_records_of, title="key-index:refresh",
    )

    @subscriber
    async def refresh(records: Any) -> None:
        for record in records:
            try:
                _, event = REGISTRY.decode(record.value or b"")
            except NotYetReadable as error:
                log.error("key index cannot read a record a newer jobmeter wrote: upgrade this process",
                          topic=record.topic, partition=record.partition, offset=record.offset, reason=error.reason)
                if len(index.unreadable) < 10:
                    index.unreadable.append(f"{record.topic}[{record.partition}]@{record.offset}: {error.reason}")
                continue
            except DecodeError as error:
                # The folding consumers dead-letter bad records; the index just does not learn from them.
                log.warning("key index skipped a record", topic=record.topic, offset=record.offset,
                            reason=error.reason)
                continue
            index.apply(event)

    @asynccontextmanager
    async def loaded(res: Resources) -> AsyncIterator[None]:
        await index.load(res)
        yield

    runtime.extras.append(loaded)
    return index
