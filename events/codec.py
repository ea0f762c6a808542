"""Serialization, and versioning by upcasting.

An event changes by adding a version and an upcaster from the previous one, never by editing the meaning
of an old field. Decoding upcasts an old payload step by step to the current model, so projections only
ever see the current shape, and replaying a log written years ago still works.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from events.envelope import Envelope, Event

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class DecodeError(ValueError):
    """Bytes that are not a valid event; `reason` is written to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
        for model in models:
            self.register(model)

    def register(self, model: type[Event]) -> type[Event]:
        self._models[model.event_type] = model
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
        try:
            envelope = Envelope.model_validate_json(raw)
        except ValidationError as error:
            raise DecodeError(f"not an event envelope: {describe(error)}") from None
        return envelope, self.event_of(envelope)

    def event_of(self, envelope: Envelope) -> Event:
        model = self._models.get(envelope.type)
        if model is None:
            raise DecodeError(f"unknown event type {envelope.type!r}")
        data, version = dict(envelope.data), envelope.version
        if version > model.version:
            raise DecodeError(f"{envelope.type} v{version} is newer than this reader (v{model.version})")
        while version < model.version:
            step = self._upcasters.get((envelope.type, version))
            if step is None:
                raise DecodeError(f"no upcaster for {envelope.type} v{version} -> v{version + 1}")
            data, version = step(data), version + 1
        try:
            return model.model_validate(data)
        except ValidationError as error:
            raise DecodeError(f"invalid {envelope.type}: {describe(error)}") from None


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode()
