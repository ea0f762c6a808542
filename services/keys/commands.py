"""API-key commands and reads. Keys are facts on the bus (`keys` topic), folded by the key store.

A secret is `jm_live_` + 32 random bytes (URL-safe); only its sha256 and a short visible prefix are kept
anywhere, so it is shown once, to whoever created it.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from events.keys import KeyIssued, KeyRevoked
from projections.accounts import queries as accounts
from projections.keys import queries as keys
from services.platform.resources import Resources
from services.platform.rows import plain

SECRET_PREFIX = "jm_live_"  # noqa: S105 - the marker every key starts with, not a secret
VISIBLE_CHARS = len(SECRET_PREFIX) + 4


class KeyCommandError(LookupError):
    """A key command that cannot be done as asked (unknown account or key, key already revoked)."""


@dataclass(frozen=True)
class NewKey:
    key: str  # the secret: shown once, never stored
    key_id: str
    prefix: str
    account_id: str
    folded: bool  # False when the key store had not applied it within the wait (it will)

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "key_id": self.key_id, "prefix": self.prefix, "account_id": self.account_id,
                "state": "active" if self.folded else "issuing"}


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


async def create_key(res: Resources, account_id: str, *, wait_seconds: float = 5.0) -> NewKey:
    async with res.pool_for("accounts").acquire() as conn:
        found = await accounts.account(conn, account_id)
    if found is None:
        raise KeyCommandError(f"no account {account_id!r}")
    secret = new_secret()
    event = KeyIssued(
        account_id=account_id, key_id=f"key_{secrets.token_hex(8)}", prefix=secret[:VISIBLE_CHARS],
        key_hash=key_hash(secret), issued_at=datetime.now(UTC),
    )
    await res.publisher.publish(event)
    folded = await _wait_for(res, event.key_id, "active", wait_seconds)
    return NewKey(secret, event.key_id, event.prefix, account_id, folded)


async def revoke_key(res: Resources, key_id: str, reason: str = "revoked by an operator",
                     *, wait_seconds: float = 5.0) -> dict[str, Any]:
    key = await get_key(res, key_id)
    if key is None:
        raise KeyCommandError(f"no key {key_id!r}")
    if key["state"] == "revoked":
        raise KeyCommandError(f"key {key_id} is already revoked")
    await res.publisher.publish(
        KeyRevoked(account_id=key["account_id"], key_id=key_id, reason=reason, revoked_at=datetime.now(UTC))
    )
    await _wait_for(res, key_id, "revoked", wait_seconds)
    return await get_key(res, key_id) or key


async def rotate_key(res: Resources, key_id: str) -> tuple[NewKey, dict[str, Any]]:
    """Issue a new key for the same account, then revoke the old one."""
    old = await get_key(res, key_id)
    if old is None:
        raise KeyCommandError(f"no key {key_id!r}")
    if old["state"] == "revoked":
        raise KeyCommandError(f"key {key_id} is revoked; create a new one instead")
    new = await create_key(res, old["account_id"])
    revoked = await revoke_key(res, key_id, f"rotated to {new.key_id}")
    return new, revoked


async def get_key(res: Resources, key_id: str) -> dict[str, Any] | None:
    async with res.pool_for("keys").acquire() as conn:
        row = await keys.key(conn, key_id)
    return plain(row) if row else None


async def list_keys(res: Resources, account_id: str | None = None) -> list[dict[str, Any]]:
    async with res.pool_for("keys").acquire() as conn:
        rows = await keys.keys(conn, account_id)
    return [plain(r) for r in rows]


async def _wait_for(res: Resources, key_id: str, state: str, wait_seconds: float) -> bool:
    deadline = time.monotonic() + wait_seconds
    while True:
        async with res.pool_for("keys").acquire() as conn:
            found = await keys.key_state(conn, key_id)
        if found == state:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)

