"""Usage-cap commands and reads: caps are facts on the bus (CapSet, CapCleared on the accounts topic), folded by
the caps projection, which holds the account's keys when a hard cap is reached."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from events.caps import CapCleared, CapSet
from projections.accounts import queries as accounts
from projections.caps import queries as caps
from projections.db import has_table
from services.platform.resources import Resources
from services.platform.rows import plain


class CapCommandError(LookupError):
    """A cap command that cannot be done as asked (an unknown account or API surface)."""


async def known(res: Resources, account_id: str, api: str | None) -> None:
    async with res.pool_for("accounts").acquire() as conn:
        found = await accounts.account(conn, account_id)
    if found is None:
        raise CapCommandError(f"no account {account_id!r}")
    if api is not None and api not in res.settings.jobmeter_apis:
        raise CapCommandError(f"unknown API surface {api!r}; known: {', '.join(res.settings.jobmeter_apis)}")


async def set_cap(res: Resources, account_id: str, jobs: int, *, api: str | None = None, hard: bool = True,
                  spend_minor: int | None = None) -> CapSet:
    """Cap the account's jobs (on `api`, or on all) per billing period; the latest cap for a scope wins."""
    await known(res, account_id, api)
    event = CapSet(account_id=account_id, api=api, jobs=jobs, hard=hard, spend_minor=spend_minor,
                   set_at=datetime.now(UTC))
    await res.publisher.publish(event)
    return event


async def clear_cap(res: Resources, account_id: str, *, api: str | None = None) -> CapCleared:
    """Take the cap of a scope away (the plan's default cap, if any, applies again to all jobs)."""
    await known(res, account_id, api)
    event = CapCleared(account_id=account_id, api=api, cleared_at=datetime.now(UTC))
    await res.publisher.publish(event)
    return event


async def list_caps(res: Resources, account_id: str | None = None) -> list[dict[str, Any]]:
    """The caps in force as the caps projection has folded them, with each one's usage this period."""
    async with res.pool_for("caps").acquire() as conn:
        if not await has_table(conn, "caps.caps"):
            return []
        rows = await caps.caps(conn, account_id)
    return [plain(r) for r in rows]


def as_json(event: CapSet | CapCleared) -> dict[str, Any]:
    return {"type": event.event_type, **event.model_dump(mode="json")}
