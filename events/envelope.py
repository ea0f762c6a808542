"""The envelope every event travels in, and the base class of every event.

An event is an immutable fact named in the past tense. On the wire it is JSON:
`{"event_id", "type", "version", "occurred_at", "producer", "data": {...}}`, keyed by account id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from hashlib import sha1
from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# A fixed namespace, so that a fact with a natural identity (a job, an account) always gets the same id.
EVENT_NAMESPACE = uuid.UUID("6f1c1a52-3f0e-4f65-9d0c-2a1f5b7e9c11")
_NAMESPACE_BYTES = EVENT_NAMESPACE.bytes
# uuid5's version and variant bits, as `UUID(bytes=..., version=5)` sets them
_VERSION_5_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_5_SET = (0x5000 << 64) | (0x8000 << 48)
_SAFE_UNKNOWN = uuid.SafeUUID.unknown
# The 17th hex digit of a uuid5 for each of the digest's: its top two bits (the variant) set to 10
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
# The namespace hashed once, its state copied per id: 15 % of an id's time less than hashing it again (timeit)
_NAMESPACE_SHA1 = sha1(_NAMESPACE_BYTES, usedforsecurity=False)


def natural_event_id(*parts: str) -> uuid.UUID:
    """A stable event id derived from the fact's own identity: the same fact published twice shares it.

    `uuid.uuid5(EVENT_NAMESPACE, "\x1f".join(parts))` exactly, without its per-call import and namespace encoding,
    and without `UUID.__init__`'s argument checks (the two slots set as CPython 3.14's `UUID._from_int` sets them):
    one id per job is made on ingest's hot path, where uuid5 was a fifth of a request's time and `UUID.__init__`
    still half of what was left (py-spy, timeit)."""
    digest = sha1(_NAMESPACE_BYTES + "\x1f".join(parts).encode(), usedforsecurity=False).digest()  # as uuid5's
    made = object.__new__(uuid.UUID)
    object.__setattr__(made, "int", (int.from_bytes(digest[:16], "big") & _VERSION_5_CLEAR) | _VERSION_5_SET)
    object.__setattr__(made, "is_safe", _SAFE_UNKNOWN)
    return made


def natural_event_id_text(*parts: str) -> str:
    """`str(natural_event_id(*parts))`, from the digest's hex without a UUID object: where only the envelope's text
    is needed (a publisher's hot path), the object and its formatting were two thirds of an id's cost (timeit)."""
    digest = _NAMESPACE_SHA1.copy()
    digest.update("\x1f".join(parts).encode())
    h = digest.hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def natural_event_id_hex(*parts: str) -> str:
    """`natural_event_id(*parts).hex`: 32 hex digits, which Postgres reads as a uuid. A fold that stores each job's
    id sends them as one text rather than UUID objects, which cost it a fifth of its time to make and encode (py-spy
    of the ledger, issue 18)."""
    digest = _NAMESPACE_SHA1.copy()
    digest.update("\x1f".join(parts).encode())
    h = digest.hexdigest()
    return f"{h[:12]}5{h[13:16]}{_VARIANT[h[16]]}{h[17:32]}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every event. Subclasses set `event_type`, `version` and `topic` (a logical topic name)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    event_type: ClassVar[str]
    version: ClassVar[int] = 1
    topic: ClassVar[str]

    def partition_key(self) -> str:
        """Kafka key; per-key order is the only order Kafka gives, so it is the account where there is one."""
        account_id = getattr(self, "account_id", None)
        if isinstance(account_id, str):
            return account_id
        raise NotImplementedError(f"{type(self).__name__} must define partition_key()")

    def natural_id(self) -> uuid.UUID | None:
        """Override where the fact has an identity of its own, so duplicates share one event id."""
        return None

    def facts(self) -> Sequence[Event]:
        """The facts this event carries, each read as an event of its own: itself, unless it is a batch of them
        (`events.jobs.JobsCompleted`)."""
        return (self,)


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    type: str = Field(min_length=1)
    version: int = Field(ge=1)
    occurred_at: AwareDatetime
    producer: str = Field(min_length=1)
    data: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        event: Event,
        *,
        producer: str,
        event_id: uuid.UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> Envelope:
        return cls(
            event_id=event_id or event.natural_id() or uuid.uuid4(),
            type=event.event_type,
            version=event.version,
            occurred_at=occurred_at or utcnow(),
            producer=producer,
            data=event.model_dump(mode="json"),
        )


def fact_id(envelope: Envelope, fact: Event) -> uuid.UUID:
    """The event id of a fact read from `envelope`: the envelope's own when the fact travelled alone, the fact's
    natural id when it travelled in a batch (`Event.facts`), so a fact keeps one id whatever carried it."""
    if envelope.type == fact.event_type:
        return envelope.event_id
    return fact.natural_id() or envelope.event_id


class EnvelopeWriter:
    """The wire form of `Envelope.wrap(...)` for a batch from one producer at one moment, built without a second
    validation or serialisation pass: the hot path of every producer.

    Each event is serialised once by pydantic's own serializer and spliced into an envelope whose constant parts
    are encoded once per batch and event type. `Envelope.model_validate_json` reads the result back exactly as
    it reads `encode(wrap(...))`.
    """

    def __init__(self, *, producer: str, occurred_at: datetime) -> None:
        self._tail = json.dumps({"occurred_at": occurred_at.isoformat(), "producer": producer},
                                separators=(",", ":"))[1:-1].encode()
        self._heads: dict[type[Event], bytes] = {}

    def encode(self, event: Event, event_id: uuid.UUID) -> bytes:
        return b'{"event_id":"%s%s%s}' % (
            str(event_id).encode(), self._head(type(event)), event.__pydantic_serializer__.to_json(event)
        )

    def encode_many(self, events: Sequence[Event], event_ids: Sequence[str]) -> list[bytes]:
        """`encode` of each event with its id as text. A batch of one type (the usual one) is spliced in one
        comprehension, with that type's serializer and head looked up once: a method call, a look-up and a UUID's
        formatting less per event."""
        kinds = {type(event) for event in events}
        if len(kinds) != 1:
            return [b'{"event_id":"%s%s%s}' % (event_id.encode(), self._head(type(event)),
                                                event.__pydantic_serializer__.to_json(event))
                    for event, event_id in zip(events, event_ids, strict=True)]
        (kind,) = kinds
        head, to_json = self._head(kind), kind.__pydantic_serializer__.to_json
        return [b'{"event_id":"%s%s%s}' % (event_id.encode(), head, to_json(event))
                for event, event_id in zip(events, event_ids, strict=True)]

    def encode_data(self, kind: type[Event], data: bytes, event_id: str) -> bytes:
        """`encode` of an event of `kind` whose data the caller serialised itself, exactly as its model would
        (`events.jobs.jobs_completed_wire`: a batch made without building the model)."""
        return b'{"event_id":"%s%s%s}' % (event_id.encode(), self._head(kind), data)

    def _head(self, kind: type[Event]) -> bytes:
        """What follows the id up to the data: the same for every event of one type in the batch."""
        head = self._heads.get(kind)
        if head is None:
            head = self._heads[kind] = b'","type":%s,"version":%d,%s,"data":' % (
                json.dumps(kind.event_type).encode(), kind.version, self._tail
            )
        return head


def encode_event(event: Event, *, producer: str, event_id: uuid.UUID, occurred_at: datetime) -> bytes:
    """One event's wire form (see EnvelopeWriter)."""
    return EnvelopeWriter(producer=producer, occurred_at=occurred_at).encode(event, event_id)
