"""Serialization, and versioning by upcasting.

An event changes by adding a version and an upcaster from the previous one, never by editing the meaning
of an old field. Decoding upcasts an old payload step by step to the current model, so projections only
ever see the current shape, and replaying a log written years ago still works.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, ValidationError, create_model

from events.envelope import Envelope, Event

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class DecodeError(ValueError):
    """Bytes that are not a valid event; `reason` is written to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotYetReadable(DecodeError):
    """An event this reader cannot read but a newer one can: a newer version, or a type it does not know. Never
    dead-lettered: the reader holds its partition there until a reader that knows it comes (an upgrade)."""


def describe(error: ValidationError) -> str:
    """A validation error as one line a person can act on: `field: problem; field: problem`."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "(body)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class EventRegistry:
    def __init__(self, models: Iterable[type[Event]] = ()) -> None:
        self._models: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._wire: TypeAdapter[Any] | None = None
        for model in models:
            self.register(model)

    def register(self, model: type[Event]) -> type[Event]:
        self._models[model.event_type] = model
        self._wire = None
        return model

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register the step from `from_version` to `from_version + 1` of one event type."""

        def register(step: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = step
            return step

        return register

    def model(self, event_type: str) -> type[Event]:
        return self._models[event_type]

    def models(self) -> list[type[Event]]:
        return list(self._models.values())

    def decode(self, raw: bytes) -> tuple[Envelope, Event]:
        """Bytes from the log as (envelope, current event); DecodeError with a reason a person can act on."""
        try:
            wire = self._wire_adapter().validate_json(raw)
        except ValidationError:
            return self._decode_slowly(raw)  # an older version to upcast, or an error to explain
        return wire, wire.data

    def _decode_slowly(self, raw: bytes) -> tuple[Envelope, Event]:
        try:
            envelope = Envelope.model_validate_json(raw)
        except ValidationError as error:
            raise DecodeError(f"not an event envelope: {describe(error)}") from None
        return envelope, self.event_of(envelope)

    def _wire_adapter(self) -> TypeAdapter[Any]:
        """One validation pass from bytes to the typed event, for every type at its current version.

        Consumers decode every record of the log; reading the envelope and then its data again doubled that cost.
        """
        if self._wire is None:
            shapes = [wire_shape(model) for model in self._models.values()]
            union: Any = shapes[0] if len(shapes) == 1 else Union[tuple(shapes)]  # noqa: UP007
            self._wire = TypeAdapter(Annotated[union, Field(discriminator="type")])
        return self._wire

    def event_of(self, envelope: Envelope) -> Event:
        model = self._models.get(envelope.type)
        if model is None:
            raise NotYetReadable(f"unknown event type {envelope.type!r}")
        data, version = dict(envelope.data), envelope.version
        if version > model.version:
            raise NotYetReadable(f"{envelope.type} v{version} is newer than this reader (v{model.version})")
        while version < model.version:
            step = self._upcasters.get((envelope.type, version))
            if step is None:
                raise DecodeError(f"no upcaster for {envelope.type} v{version} -> v{version + 1}")
            data, version = step(data), version + 1
        try:
            return model.model_validate(data)
        except ValidationError as error:
            raise DecodeError(f"invalid {envelope.type}: {describe(error)}") from None


def wire_shape(model: type[Event]) -> type[Envelope]:
    """The envelope of one event type at its current version, `data` typed as that event.

    An Envelope still (every reader of `Recorded.envelope` works unchanged), except that its `data` holds the
    typed event where a plain Envelope holds the event's fields as a dict."""
    literal: Any = Literal  # values known only at run time: a static checker cannot see these types
    shape: type[Envelope] = create_model(
        f"{model.event_type}Envelope",
        __base__=Envelope,
        type=(literal[model.event_type], ...),
        version=(literal[model.version], ...),
        data=(model, ...),
    )
    return shape


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode()
