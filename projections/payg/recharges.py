"""The fold's side of recharging: the rules once per account and batch (tell that the balance went below its
threshold, request a recharge, suspend or restore keys), and how a recharge ends (credited when paid, counted and
notified when it failed).

Runs inside the fold's transaction; returns the events to emit in it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import structlog

from events.envelope import Event, natural_event_id
from events.keys import KeyRestored, KeySuspended
from events.payg import (
    AutoRechargeDisabled,
    BalanceCredited,
    BalanceLow,
    RechargeCanceled,
    RechargeFailed,
    RechargeRequested,
    RechargeSucceeded,
    recharge_id,
)
from projections.payg import recharge_store, store
from projections.payg.config import PaygConfig
from projections.payg.rules import (
    PaygPolicy,
    RechargeState,
    after_failure,
    balance_low,
    failure_message,
    key_action,
    should_recharge,
)
from projections.payg.store import Movement
from projections.payg.stripe_events import RechargeSettled

log = structlog.get_logger(__name__)


async def settle(conn: asyncpg.Connection, settled: RechargeSettled, config: PaygConfig,
                 now: datetime) -> list[Event]:
    """A recharge's outcome from Stripe (its webhook, or the reconciler's lookup): credited once when it paid."""
    row = await recharge_store.recharge(conn, settled.recharge_id)
    if row is None:
        log.warning("payment for an unknown recharge ignored", recharge_id=settled.recharge_id,
                    payment_intent=settled.payment_intent_id)
        return []
    account = row["account_id"]
    if not settled.succeeded:
        return await fail(conn, RechargeFailed(
            account_id=account, recharge_id=settled.recharge_id, code=settled.code, message=settled.message[:1000],
            payment_intent_id=settled.payment_intent_id, failed_at=settled.at,
        ), config.policy)
    config.check_currency(settled.currency, f"payment intent {settled.payment_intent_id}")
    movement = Movement(f"recharge:{settled.payment_intent_id}", account, "recharge", settled.amount_minor,
                        settled.payment_intent_id, settled.at, recharge_event_id(settled), settled.payment_intent_id)
    if not await store.add_movements(conn, [movement], now):
        return []
    # Money arrived, whatever we thought of this recharge before: it is settled and the failures are over.
    await recharge_store.recharge_succeeded(conn, settled.recharge_id, settled.payment_intent_id, settled.at)
    await store.clear_failures(conn, account)
    return [
        BalanceCredited(account_id=account, amount_minor=settled.amount_minor, currency=settled.currency,
                        source="recharge", reference=settled.payment_intent_id),
        RechargeSucceeded(account_id=account, recharge_id=settled.recharge_id,
                          payment_intent_id=settled.payment_intent_id, amount_minor=settled.amount_minor),
    ]


async def fail(conn: asyncpg.Connection, failed: RechargeFailed, policy: PaygPolicy) -> list[Event]:
    """A recharge failed (noticed by the recharger, or by Stripe's webhook, whichever first): once."""
    row = await recharge_store.recharge(conn, failed.recharge_id)
    if row is None or row["state"] != "requested":
        return []
    await recharge_store.recharge_failed(conn, failed)
    account = row["account_id"]
    balance = await store.failure_state(conn, account)
    outcome = after_failure(balance["failures"], failed.failed_at, policy)
    turn_off = outcome.disable_auto and balance["auto_recharge"]
    await store.record_failure(conn, account, outcome.failures, outcome.backoff_until, outcome.disable_auto)
    detail = f"{failure_message(failed.code)} (recharge {failed.recharge_id}, attempt {outcome.failures})"
    if turn_off:
        detail += "; automatic recharge is now off until you pay or update your card"
    await recharge_store.notify_failure(conn, failed, row, detail)
    log.warning("recharge failed", account_id=account, recharge_id=failed.recharge_id, code=failed.code,
                failures=outcome.failures, auto_off=turn_off)
    out: list[Event] = [failed.model_copy(update={"account_id": account})]
    if turn_off:
        out.append(AutoRechargeDisabled(account_id=account, failures=outcome.failures, cause=failed.recharge_id))
    return out


async def cancel(conn: asyncpg.Connection, canceled: RechargeCanceled) -> None:
    """The recharger ended a recharge unsent: canceled, no failure counted, nobody told. The account is among the
    batch's, so the rules that follow decide afresh (at this batch's log time) whether it needs another."""
    if await recharge_store.recharge_canceled(conn, canceled):
        log.info("recharge canceled", account_id=canceled.account_id, recharge_id=canceled.recharge_id,
                 reason=canceled.reason)


async def decide(conn: asyncpg.Connection, accounts: dict[str, str | None], policy: PaygPolicy,
                 now: datetime) -> list[Event]:
    """The rules, once per account and batch: the balance gone below its threshold, at most one recharge requested,
    keys suspended or restored. What they decide for the flags is written for every account at once."""
    out: list[Event] = []
    marks: list[store.Marks] = []
    for b in await store.balances_for_rules(conn, accounts):
        low, low_event = decide_low(b, now)
        if low_event is not None:
            out.append(low_event)
        if should_recharge(recharge_state(b), now):
            out.append(await request(conn, b, now))
        keys, key_event = decide_keys(b, policy, now)
        if key_event is not None:
            out.append(key_event)
        if (low, keys) != ((b["low"], b["low_crossings"]), (b["keys_suspended"], b["key_decisions"])):
            marks.append(store.Marks(b["account_id"], low[0], low[1], keys[0], keys[1]))
    await store.mark(conn, marks)
    return out


def recharge_state(b: asyncpg.Record) -> RechargeState:
    return RechargeState(
        balance_minor=b["balance_minor"], threshold_minor=b["threshold_minor"],
        recharge_minor=b["recharge_minor"], auto_recharge=b["auto_recharge"],
        has_card=bool(b["customer_id"] and b["payment_method_id"]), in_flight=b["in_flight"],
        failures=b["failures"], backoff_until=b["backoff_until"],
    )


def decide_low(b: asyncpg.Record, now: datetime) -> tuple[tuple[bool, int], BalanceLow | None]:
    """Once per crossing below the threshold, for every PAYG balance (auto-recharge or not): the flag and the count
    (returned, written by `decide` in the fold's transaction, so a refold of the batch raises the same crossing,
    under the same id), and the alert."""
    verdict = balance_low(b["balance_minor"], b["threshold_minor"], b["low"])
    if verdict.low == b["low"]:
        return (b["low"], b["low_crossings"]), None
    crossing = b["low_crossings"] + 1 if verdict.alert else b["low_crossings"]
    if not verdict.alert:
        return (verdict.low, crossing), None
    log.info("balance low", account_id=b["account_id"], balance_minor=b["balance_minor"],
             threshold_minor=b["threshold_minor"], crossing=crossing)
    return (verdict.low, crossing), BalanceLow(
        account_id=b["account_id"], balance_minor=b["balance_minor"], threshold_minor=b["threshold_minor"],
        currency=b["currency"], crossing=crossing, low_at=now,
    )


def decide_keys(b: asyncpg.Record, policy: PaygPolicy,
                now: datetime) -> tuple[tuple[bool, int], KeySuspended | KeyRestored | None]:
    """Suspend the keys of an exhausted balance, restore them once it is in credit again: the flag and the count
    of decisions (returned, written by `decide`), and the event."""
    action = key_action(b["balance_minor"], b["keys_suspended"], policy)
    if action is None:
        return (b["keys_suspended"], b["key_decisions"]), None
    seq = b["key_decisions"] + 1
    kind = KeySuspended if action == "suspend" else KeyRestored
    reason = "payg_exhausted" if action == "suspend" else "payg_credit"
    return (action == "suspend", seq), kind(
        account_id=b["account_id"], source="payg", reason=reason, cause=f"payg:{seq}", effective_at=now, sequence=seq,
    )


async def request(conn: asyncpg.Connection, b: asyncpg.Record, now: datetime) -> RechargeRequested:
    seq = b["recharge_seq"] + 1
    event = RechargeRequested(
        account_id=b["account_id"], recharge_id=recharge_id(b["account_id"], seq), seq=seq,
        amount_minor=b["recharge_minor"], currency=b["currency"], customer_id=b["customer_id"],
        payment_method_id=b["payment_method_id"], requested_at=now,
    )
    await recharge_store.request_recharge(conn, event)
    log.info("recharge requested", account_id=event.account_id, recharge_id=event.recharge_id,
             amount_minor=event.amount_minor, balance_minor=b["balance_minor"])
    return event


def recharge_event_id(settled: RechargeSettled) -> uuid.UUID:
    return natural_event_id("payg-credit", settled.payment_intent_id)
