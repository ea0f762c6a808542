"""The key index starts from its snapshot's positions: a restart reads only the log past what the key store and the
account registry had folded, and still answers every check as if it had read it all."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import httpx

from events.accounts import AccountRegistered
from events.keys import KeyIssued, KeySuspended
from jobmeter.settings import Settings
from services.engine.runtime import build_runtime
from services.http.app import create_app
from services.keys.commands import create_key, key_hash, new_secret, revoke_key
from services.keys.index import KeyIndex
from tests.integration.helpers import applied_to_end, client_for, eventually, read_to_end

ACCOUNTS = ("alpha", "bravo", "charlie")
KEYS_EACH = 8


async def status(client: httpx.AsyncClient, secret: str) -> httpx.Response:
    return await client.get("/v1/keys/check", headers={"Authorization": f"Bearer {secret}"})


async def test_a_fresh_index_reads_only_the_records_past_its_snapshot(settings: Settings) -> None:
    # Folded before the restart: three accounts and their keys, all in the key store and the registry.
    issued: dict[str, list[tuple[str, str]]] = {}  # account → (key_id, secret)
    async with build_runtime(settings, ["accounts", "keys"]).running(producer="test") as runtime:
        res = runtime.res
        for account in ACCOUNTS:
            await res.publisher.publish(AccountRegistered(account_id=account, model="subscription"))
        await applied_to_end(settings, "accounts", "accounts")
        for account in ACCOUNTS:
            issued[account] = []
            for _ in range(KEYS_EACH):
                key = await create_key(res, account, wait_seconds=0)
                issued[account].append((key.key_id, key.key))
        await applied_to_end(settings, "keys", "keys")
        await applied_to_end(settings, "accounts", "accounts")
    folded = len(await read_to_end(settings, "keys")) + len(await read_to_end(settings, "accounts"))
    assert folded == len(ACCOUNTS) * (KEYS_EACH + 1)

    # Past the snapshot (no fold running): a suspension, a revocation, a new key, a new account with a key.
    delta_secret = new_secret()
    async with build_runtime(settings, []).running(producer="test") as runtime:
        res = runtime.res
        await res.publisher.publish(KeySuspended(account_id="bravo", source="dunning", reason="final payment failed",
                                                 cause="evt_after_snapshot", effective_at=datetime.now(UTC),
                                                 sequence=1))
        revoked_id, revoked_secret = issued["charlie"][0]
        await revoke_key(res, revoked_id, "leaked", wait_seconds=0)
        fresh = await create_key(res, "alpha", wait_seconds=0)
        await res.publisher.publish(AccountRegistered(account_id="delta", model="payg"))
        await res.publisher.publish(KeyIssued(account_id="delta", key_id=f"key_{secrets.token_hex(8)}",
                                              prefix=delta_secret[:12], key_hash=key_hash(delta_secret),
                                              issued_at=datetime.now(UTC)))
    tail = 5
    total = len(await read_to_end(settings, "keys")) + len(await read_to_end(settings, "accounts"))
    assert total == folded + tail

    app = create_app(settings)  # the HTTP process alone: no fold moves the positions it starts from
    async with client_for(app) as client:
        index: KeyIndex = app.state.key_index
        # Ready means caught up with the log as of the start: its first answer already has the late suspension.
        first = await eventually(lambda: status(client, issued["bravo"][0][1]), lambda r: r.status_code != 503)
        assert first.status_code == 403 and first.json()["state"] == "suspended", first.text
        assert index.ready and index.follower is not None
        assert index.follower.received == tail, f"read {index.follower.received} records, the tail is {tail}"

        for account, keys in issued.items():
            for key_id, secret in keys:
                answer = await status(client, secret)
                body = answer.json()
                if key_id == revoked_id:
                    assert (answer.status_code, body["state"]) == (403, "revoked"), body
                elif account == "bravo":
                    assert (answer.status_code, body["state"]) == (403, "suspended"), body
                    assert "final payment failed" in body["reason"]
                else:
                    assert answer.status_code == 200, body
                    assert body == {"account_id": account, "key_id": key_id, "state": "active",
                                    "billing_model": "subscription"}
        assert (await status(client, revoked_secret)).json()["state"] == "revoked"
        assert (await status(client, fresh.key)).json()["state"] == "active"
        delta = await status(client, delta_secret)
        assert delta.status_code == 200 and delta.json()["billing_model"] == "payg", delta.text
        assert (await status(client, new_secret())).status_code == 401

        # Still following after the start: a restoration published now reaches the check.
        async with build_runtime(settings, []).running(producer="test") as runtime:
            await runtime.res.publisher.publish(
                KeySuspended(account_id="alpha", source="payg", reason="payg_exhausted", cause="payg:late",
                             effective_at=datetime.now(UTC), sequence=1))
        late = await eventually(lambda: status(client, fresh.key), lambda r: r.status_code == 403)
        assert late.json()["state"] == "suspended"
        assert index.follower.received == tail + 1
