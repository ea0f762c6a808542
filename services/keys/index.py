"""The key check's in-memory index: sha256(secret) → key, plus the holds on each account and billing models.

Loaded from the key store and the account registry when the process starts, each read in one snapshot with the
positions its projection committed beside its rows (`services/keys/snapshot.py`), then kept fresh by a consumer of
the `keys` and `accounts` topics that starts at those positions (`services/keys/follow.py`), so a restart reads
only what the projections had not folded yet — it scales with their lag, not with the log's age — and a change
reaches the check within a moment of reaching Kafka. It joins no consumer group (every process needs every
event); folding is idempotent — a revocation is final, each source's highest `sequence` wins for its own hold
— so an event the snapshot already had changes nothing. The index is ready (the check answers) once it has read
every partition up to the end it had when the process started.

A key works only while no source (dunning, PAYG, a usage cap) holds its account. A cap is the one hold that
ends by itself (at its period's end): when caps are all that hold an account, the check says "capped" and when
to retry; any other hold makes it "suspended". A hold may stop some API surfaces only (its `scope`: caps on some
surfaces): it applies to a check that names one of them, and to a check that names none (a caller that does not
say which surface it serves is refused whenever any hold applies, so callers from before scopes stay safe).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import AsyncIterator, Iterable
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
from projections.positions import Partition
from services.keys.follow import Follower
from services.keys.snapshot import read_snapshot
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
    scope: frozenset[str] | None = None  # the API surfaces it stops; None: all


@dataclass(frozen=True)
class Hold:
    source: HoldSource
    reason: str
    until: datetime | None = None
    scope: frozenset[str] | None = None


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
            body["holds"] = [{"source": h.source, "reason": h.reason, "until": h.until.isoformat() if h.until else None,
                              "scope": sorted(h.scope) if h.scope is not None else None} for h in self.holds]
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return body


def holding(decisions: dict[HoldSource, Suspension], api: str | None = None) -> tuple[Hold, ...]:
    """The sources that hold the account now for a call to `api` (None: a caller that did not say), in source
    order: a hold scoped to some surfaces applies to those and to unnamed calls."""
    return tuple(Hold(source, d.reason, d.until, d.scope) for source, d in sorted(decisions.items())
                 if d.suspended and (api is None or d.scope is None or api in d.scope))


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
    # What keeps it fresh once the runtime opened: it reads the log from where the loaded rows end (`received`:
    # the records it read since).
    follower: Follower | None = None

    def check(self, secret: str, now: datetime | None = None, api: str | None = None) -> KeyCheck | None:
        """The key's account and state for a call to `api` (None: unnamed, so every hold applies); None for a key
        we do not know."""
        digest = hashlib.sha256(secret.encode()).hexdigest()
        entry = self.by_hash.get(digest)
        if entry is None or not hmac.compare_digest(entry.key_hash, digest):
            return None
        model = self.models.get(entry.account_id)
        if entry.revoked or entry.key_id in self.revoked:
            return KeyCheck(entry.account_id, entry.key_id, "revoked", model, "the key was revoked")
        holds = holding(self.suspensions.get(entry.account_id, {}), api)
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
            self.suspend(event.account_id, event.source, event.sequence, True, event.reason, event.until, event.scope)
        elif isinstance(event, KeyRestored):
            self.suspend(event.account_id, event.source, event.sequence, False, event.reason)
        elif isinstance(event, AccountRegistered):
            self.models.setdefault(event.account_id, event.model)

    def suspend(self, account_id: str, source: HoldSource, sequence: int, suspended: bool, reason: str,
                until: datetime | None = None, scope: Iterable[str] | None = None) -> None:
        """Record one source's decision unless that source already decided later; other sources are untouched."""
        decisions = self.suspensions.setdefault(account_id, {})
        current = decisions.get(source)
        if current is None or current.sequence < sequence:
            decisions[source] = Suspension(sequence, suspended, reason, until,
                                           frozenset(scope) if scope is not None else None)

    async def load(self, res: Resources, keys_topic: str, accounts_topic: str) -> dict[Partition, int]:
        """Fill the index from the key store and the account registry, each read in one snapshot with its positions;
        returns those positions, per partition of the two topics: where the log goes on past these rows."""
        snapshot = await read_snapshot(res, keys_topic, accounts_topic)  # each projection in its own database
        known, suspensions, models = snapshot.keys, snapshot.suspensions, snapshot.models
        for k in known:
            self.by_hash.setdefault(k["key_hash"], KeyEntry(k["key_id"], k["account_id"], k["key_hash"]))
            if k["state"] == "revoked":
                self.revoked.add(k["key_id"])
        for s in suspensions:
            self.suspend(s["account_id"], s["source"], s["sequence"], s["suspended"], s["reason"], s["until"],
                         s["scope"])
        for account_id, model in models.items():
            self.models.setdefault(account_id, model)
        held = {s["account_id"] for s in suspensions if s["suspended"]}
        log.info("key index loaded", keys=len(known), held=len(held), positions=len(snapshot.positions))
        return snapshot.positions


def refresh(index: KeyIndex, records: Iterable[Any]) -> None:
    """Apply Kafka records (anything with topic, partition, offset and value) to the index."""
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


def mount_key_index(runtime: Runtime) -> KeyIndex:
    """Load the index when the runtime opens and follow the keys and accounts topics from the positions it was
    loaded at (every process reads every record: no group); ready once caught up with the log as of its start."""
    index = KeyIndex()
    topics = Topics(runtime.settings.jobmeter_topic_prefix)
    names = (topics.name("keys"), topics.name("accounts"))

    def caught_up() -> None:
        index.ready = True

    @asynccontextmanager
    async def following(res: Resources) -> AsyncIterator[None]:
        start = await index.load(res, *names)
        index.follower = Follower(runtime.settings.kafka_bootstrap_servers, names, start,
                                  lambda records: refresh(index, records), caught_up, name="key index")
        async with index.follower:
            yield

    runtime.extras.append(following)
    return index
