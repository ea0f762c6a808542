"""Rows as commands hand them to the CLI and the HTTP API: plain dicts whose times are ISO 8601 strings."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any


def iso(value: Any) -> Any:
    """A date or time as ISO 8601 text; anything else as it is."""
    return value.isoformat() if isinstance(value, date | datetime) else value


def plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """A database row (an asyncpg Record or a dict) with its dates and times as ISO 8601 text."""
    return {k: iso(v) for k, v in row.items()}
