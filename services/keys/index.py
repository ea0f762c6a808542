"""The key check's in-memory index: sha256(secret) → key, plus account suspensions and billing models.

Loaded from the key store and the account registry when the process starts, then kept fresh by a subscriber
on the `keys` and `accounts` topics, so a change reaches the check within a moment of reaching Kafka. The
subscriber reads those topics from the beginning, without a consumer group (every process needs every
event); folding is idempotent — a revocation is final, the highest suspension `sequence` wins — so events
the snapshot already had change nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import structlog

from events.accounts import AccountRegistered
from events.codec import DecodeError
from events.envelope import Event
from events.keys import KeyIssued, KeyRestored, KeyRevoked, KeySuspended
from events.registry import REGISTRY
from events.topics import Topics
from projections.accounts import queries as accounts
from projections.keys import queries as keys
from services.platform.resources import Resources

if TYPE_CHECKING:
    from services.engine.runtime import Runtime

log = structlog.get_logger(__name__)

KeyState = Literal["active", "revoked", "suspended"]


@dataclass
class KeyEntry:
    key_id: str
    account_id: str
    key_hash: str
    revoked: bool = False


@dataclass(frozen=True)
class Suspension:
    sequence: int
    suspended: bool
    reason: str


@dataclass(frozen=True)
class KeyCheck:
    account_id: str
    key_id: str
    state: KeyState
    billing_model: str | None
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"account_id": self.account_id, "key_id": self.key_id, "state": self.state,
                                "billing_model": self.billing_model}
        if self.reason:
            body["reason"] = self.reason
        return body


@dataclass
class KeyIndex:
    by_hash: dict[str, KeyEntry] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)  # key ids; kept even if the issue has not been seen yet
    suspensions: dict[str, Suspension] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    ready: bool = False

    def check(self, secret: str) -> KeyCheck | None:
        """The key's account and state; None for a key we do not know."""
        digest = hashlib.sha256(secret.encode()).hexdigest()
        entry = self.by_hash.get(digest)
        if entry is None or not hmac.compare_digest(entry.key_hash, digest):
            return None
        model = self.models.get(entry.account_id)
        if entry.revoked or entry.key_id in self.revoked:
            return KeyCheck(entry.account_id, entry.key_id, "revoked", model, "the key was revoked")
        suspension = self.suspensions.get(entry.account_id)
        if suspension is not None and suspension.suspended:
            return KeyCheck(entry.account_id, entry.key_id, "suspended", model, suspension.reason)
        return KeyCheck(entry.account_id, entry.key_id, "active", model)

    def apply(self, event: Event) -> None:
        if isinstance(event, KeyIssued):
            self.by_hash.setdefault(event.key_hash, KeyEntry(event.key_id, event.account_id, event.key_hash))
        elif isinstance(event, KeyRevoked):
            self.revoked.add(event.key_id)
        elif isinstance(event, KeySuspended | KeyRestored):
            self.suspend(event.account_id, event.sequence, isinstance(event, KeySuspended), event.reason)
        elif isinstance(event, AccountRegistered):
            self.models.setdefault(event.account_id, event.model)

    def suspend(self, account_id: str, sequence: int, suspended: bool, reason: str) -> None:
        current = self.suspensions.get(account_id)
        if current is None or current.sequence < sequence:
            self.suspensions[account_id] = Suspension(sequence, suspended, reason)

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
            self.suspend(s["account_id"], s["sequence"], s["suspended"], s["reason"])
        for account_id, model in models.items():
            self.models.setdefault(account_id, model)
        self.ready = True
        log.info("key index loaded", keys=len(known), suspended=sum(s["suspended"] for s in suspensions))


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
