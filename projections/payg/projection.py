"""The PAYG balance fold: jobs debit, top-ups and recharges credit, and the rules run once per batch.

Billable here: `JobCompleted` on the direct channel (RapidAPI bills its own traffic) of an account whose model is
`payg`, as this projection's own view of the registry says (`projections.account_view`, folded from the accounts
topic): a job of an account not registered yet waits in `parked_jobs` and is debited when the registration says
PAYG, dropped when it says otherwise. Every debit and credit is a row of `movements`
keyed by the identity of its cause, so a job or a Stripe event seen twice moves the balance once. What the rules
decide (a recharge, a key suspension or restoration) and every movement go to this schema's outbox as events,
in the transaction that moves the positions; `services.payg.recharger` charges what is requested, and
`services.payg.reconciler` looks up at Stripe the card a top-up saved (`card_captures` → `PaygCardSaved`) and the
outcome of a recharge whose webhook is late (→ `RechargeConfirmed` / `RechargeFailed`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import structlog

from events.accounts import StripeCustomerLinked
from events.envelope import Envelope, Event, natural_event_id
from events.jobs import JobCompleted
from events.keys import KeyRestored, KeySuspended
from events.payg import (
    AutoRechargeDisabled,
    BalanceCredited,
    BalanceDebited,
    PaygCardSaved,
    PaygConfigured,
    RechargeConfirmed,
    RechargeFailed,
    RechargeRequested,
    RechargeSucceeded,
    recharge_id,
)
from events.registry import REGISTRY
from events.stripe import StripeEventReceived
from jobmeter.settings import Settings
from projections.account_view import ACCOUNT_EVENTS, AccountEvent, accounts_of, fold_accounts, lock_accounts
from projections.outbox import emit
from projections.payg import store
from projections.payg.rules import (
    PaygPolicy,
    Prices,
    RechargeState,
    after_failure,
    failure_message,
    key_action,
    parse_prices,
    price_of,
    should_capture_card,
    should_recharge,
)
from projections.payg.store import Charge, Defaults, Movement
from projections.payg.stripe_events import (
    RechargeSettled,
    TopUp,
    confirmed_settlement,
    recharge_settled,
    topup_of,
)
from projections.projection import Projection
from projections.records import Recorded

log = structlog.get_logger(__name__)

PRODUCER = "jobmeter-payg"


@dataclass(frozen=True)
class PaygConfig:
    prices: Prices
    defaults: Defaults
    policy: PaygPolicy

    @classmethod
    def of(cls, s: Settings) -> PaygConfig:
        return cls(
            prices=parse_prices(s.jobmeter_payg_prices),
            defaults=Defaults(
                s.jobmeter_payg_currency, s.jobmeter_payg_threshold_minor, s.jobmeter_payg_recharge_minor
            ),
            policy=PaygPolicy(
                allowance_minor=s.jobmeter_payg_allowance_minor,
                max_failures=s.jobmeter_payg_max_failures,
                backoff=timedelta(seconds=s.jobmeter_payg_backoff_seconds),
                backoff_max=timedelta(seconds=s.jobmeter_payg_backoff_max_seconds),
            ),
        )


@dataclass
class Batch:
    """A batch sorted by what it means for PAYG; `at` is its latest log time, the rules' "now"."""

    at: datetime
    jobs: list[Charge]
    registrations: list[AccountEvent]
    configs: list[PaygConfigured]
    topups: list[tuple[TopUp, Envelope]]
    settlements: list[RechargeSettled]
    failures: list[RechargeFailed]
    cards: list[PaygCardSaved]

    @classmethod
    def of(cls, events: Sequence[Recorded[Event]]) -> Batch:
        batch = cls(max(i.logged_at for i in events), [], [], [], [], [], [], [])
        for item in events:
            event = item.event
            if isinstance(event, JobCompleted) and event.channel == "direct":
                batch.jobs.append(
                    Charge(event.account_id, event.api, event.job_id, event.completed_at, item.envelope.event_id)
                )
            elif isinstance(event, ACCOUNT_EVENTS):
                batch.registrations.append(event)
            elif isinstance(event, PaygConfigured):
                batch.configs.append(event)
            elif isinstance(event, RechargeFailed):
                batch.failures.append(event)
            elif isinstance(event, RechargeConfirmed):  # the reconciler found the success the webhook did not bring
                batch.settlements.append(confirmed_settlement(event))
            elif isinstance(event, PaygCardSaved):
                batch.cards.append(event)
            elif isinstance(event, StripeEventReceived):
                topup = topup_of(event)
                settled = recharge_settled(event)
                if topup is not None:
                    batch.topups.append((topup, item.envelope))
                elif settled is not None:
                    batch.settlements.append(settled)
        return batch

    def accounts(self) -> set[str]:
        return (
            {j.account_id for j in self.jobs} | {c.account_id for c in self.configs}
            | {r.account_id for r in self.registrations}
            | {t.account_id for t, _ in self.topups} | {f.account_id for f in self.failures}
            | {c.account_id for c in self.cards}
        )


class PaygBalances(Projection):
    name = "payg"
    not_swappable = (
        "its `recharges` and `notifications` tables are which cards were charged and which customers emailed; "
        "a rebuild has them unsent, so a recharge in flight could be charged again once Stripe's idempotency key "
        "has expired, and failed-recharge notices would be emailed again"
    )
    schema = "payg"
    topics = ("accounts", "jobs", "stripe", "payg")
    migrations = Path(__file__).parent / "migrations"
    # What a replay must reproduce exactly: every movement, and which jobs still wait for their account. When a
    # recharge is requested depends on how the log was cut into batches, so balances' bookkeeping, recharges and
    # notifications are not compared.
    tables = ("movements", "accounts", "parked_jobs")
    emits = True

    def __init__(self, config: PaygConfig | None = None) -> None:
        self._config = config

    def configured(self, settings: Settings) -> PaygBalances:
        return PaygBalances(PaygConfig.of(settings))

    @property
    def config(self) -> PaygConfig:
        if self._config is None:
            raise RuntimeError("PaygBalances folds with prices and policy from settings: use .configured(settings)")
        return self._config

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        batch = Batch.of(events)
        # A recharge's account is the one we recorded, whatever the PaymentIntent's metadata says.
        settling = await store.recharge_accounts(conn, [s.recharge_id for s in batch.settlements])
        candidates = batch.accounts() | set(settling)
        if not candidates:
            return  # our own events coming back from the bus, other Stripe events: nothing to do
        await lock_accounts(conn, "payg", sorted(candidates))
        await fold_accounts(conn, batch.registrations)
        known = await accounts_of(conn, sorted(candidates))
        payg = {a: view.customer_id for a, view in known.items() if view.model == "payg"}
        await store.park_jobs(conn, [j for j in batch.jobs if j.account_id not in known])
        await store.park_topups(conn, [(t.session_id, t.account_id, e.model_dump_json())
                                       for t, e in batch.topups if t.account_id not in known])
        registered = [a for a in {r.account_id for r in batch.registrations} if a in known]
        released = await store.release_parked(conn, registered)
        released_topups = [parked_topup(envelope) for envelope in await store.release_topups(conn, registered)]
        cfg, now = self.config, batch.at
        await store.open_balances(conn, payg, cfg.defaults, now)
        out: list[Event] = []
        for config in batch.configs:
            if config.account_id in payg:
                await store.configure(conn, config, now)
        for event in batch.registrations:
            if isinstance(event, StripeCustomerLinked) and event.account_id in payg:
                await store.set_customer_if_missing(conn, event.account_id, event.stripe_customer_id)
        for card in batch.cards:
            if card.account_id in payg:
                await store.save_card(conn, card, now)
        out += await self._debit(conn, [j for j in batch.jobs + released if j.account_id in payg], now)
        for topup, envelope in batch.topups:
            if topup.account_id in payg:
                out += await self._top_up(conn, topup, envelope, now)
            elif topup.ours and topup.account_id in known:
                # Money arrived for a balance we do not keep: dead-letter it, with the reason.
                raise ValueError(f"top-up {topup.session_id} is for {topup.account_id!r}, not a PAYG account")
        for topup, envelope in released_topups:
            if topup.account_id in payg:
                out += await self._top_up(conn, topup, envelope, now)
            elif topup.ours:  # the record at hand is the registration: the top-up waits, refused, for an operator
                await store.refuse_topup(conn, topup.session_id, topup.account_id, envelope.model_dump_json(), now)
                log.error("top-up for an account that is not PAYG", session_id=topup.session_id,
                          account_id=topup.account_id)
        for settled in batch.settlements:
            out += await self._settle(conn, settled, now)
        for failed in batch.failures:
            out += await self._fail(conn, failed)
        out += await self._decide(conn, payg, now)
        await emit(conn, out, producer=PRODUCER)

    async def _debit(self, conn: asyncpg.Connection, jobs: list[Charge], now: datetime) -> list[Event]:
        prices, currency = self.config.prices, self.config.defaults.currency
        movements = [
            Movement(f"job:{j.api}:{j.job_id}", j.account_id, "debit", -price_of(prices, j.api),
                     f"{j.api}:{j.job_id}", j.completed_at, j.event_id)
            for j in jobs
        ]
        new = await store.add_movements(conn, movements, now)
        out: list[Event] = []
        for job, movement in zip(jobs, movements, strict=True):
            if movement.movement_id in new:
                new.discard(movement.movement_id)  # a job twice in one batch: one debit, one event
                out.append(BalanceDebited(account_id=job.account_id, api=job.api, job_id=job.job_id,
                                          amount_minor=-movement.amount_minor, currency=currency))
        return out

    def _check_currency(self, currency: str, what: str) -> None:
        expected = self.config.defaults.currency
        if currency != expected:
            raise ValueError(f"{what} is in {currency!r}, but PAYG balances are kept in {expected!r}")

    async def _top_up(self, conn: asyncpg.Connection, topup: TopUp, envelope: Envelope, now: datetime) -> list[Event]:
        self._check_currency(topup.currency, f"checkout session {topup.session_id}")
        movement = Movement(f"checkout:{topup.session_id}", topup.account_id, "topup", topup.amount_minor,
                            topup.session_id, envelope.occurred_at, envelope.event_id)
        await store.set_customer_if_missing(conn, topup.account_id, topup.customer_id)
        if not await store.add_movements(conn, [movement], now):
            return []
        intent = topup.payment_intent_id
        if intent and should_capture_card(intent, await store.has_card(conn, topup.account_id)):
            # No Stripe call in a fold: the worker beside the recharger looks the card up and publishes it.
            await store.request_card_capture(conn, topup.account_id, intent, topup.session_id, topup.customer_id, now)
        return [BalanceCredited(account_id=topup.account_id, amount_minor=topup.amount_minor,
                                currency=topup.currency, source="topup", reference=topup.session_id)]

    async def _settle(self, conn: asyncpg.Connection, settled: RechargeSettled, now: datetime) -> list[Event]:
        row = await store.recharge(conn, settled.recharge_id)
        if row is None:
            log.warning("payment for an unknown recharge ignored", recharge_id=settled.recharge_id,
                        payment_intent=settled.payment_intent_id)
            return []
        account = row["account_id"]
        if not settled.succeeded:
            return await self._fail(conn, RechargeFailed(
                account_id=account, recharge_id=settled.recharge_id, code=settled.code, message=settled.message[:1000],
                payment_intent_id=settled.payment_intent_id, failed_at=settled.at,
            ))
        self._check_currency(settled.currency, f"payment intent {settled.payment_intent_id}")
        movement = Movement(f"recharge:{settled.payment_intent_id}", account, "recharge", settled.amount_minor,
                            settled.payment_intent_id, settled.at, recharge_event_id(settled))
        if not await store.add_movements(conn, [movement], now):
            return []
        # Money arrived, whatever we thought of this recharge before: it is settled and the failures are over.
        await conn.execute(
            "UPDATE recharges SET state = 'succeeded', payment_intent_id = $2, settled_at = $3 WHERE recharge_id = $1",
            settled.recharge_id, settled.payment_intent_id, settled.at,
        )
        await conn.execute("UPDATE balances SET failures = 0, backoff_until = NULL WHERE account_id = $1", account)
        return [
            BalanceCredited(account_id=account, amount_minor=settled.amount_minor, currency=settled.currency,
                            source="recharge", reference=settled.payment_intent_id),
            RechargeSucceeded(account_id=account, recharge_id=settled.recharge_id,
                              payment_intent_id=settled.payment_intent_id, amount_minor=settled.amount_minor),
        ]

    async def _fail(self, conn: asyncpg.Connection, failed: RechargeFailed) -> list[Event]:
        """A recharge failed (noticed by the recharger, or by Stripe's webhook, whichever first): once."""
        row = await store.recharge(conn, failed.recharge_id)
        if row is None or row["state"] != "requested":
            return []
        await conn.execute(
            """UPDATE recharges SET state = 'failed', failure_code = $2, last_error = $3,
                      payment_intent_id = coalesce($4, payment_intent_id), settled_at = $5 WHERE recharge_id = $1""",
            failed.recharge_id, failed.code, failed.message, failed.payment_intent_id, failed.failed_at,
        )
        account = row["account_id"]
        balance = await conn.fetchrow("SELECT failures, auto_recharge FROM balances WHERE account_id = $1", account)
        outcome = after_failure(balance["failures"], failed.failed_at, self.config.policy)
        turn_off = outcome.disable_auto and balance["auto_recharge"]
        await conn.execute(
            """UPDATE balances SET failures = $2, backoff_until = $3, auto_recharge = auto_recharge AND NOT $4
               WHERE account_id = $1""",
            account, outcome.failures, outcome.backoff_until, outcome.disable_auto,
        )
        detail = f"{failure_message(failed.code)} (recharge {failed.recharge_id}, attempt {outcome.failures})"
        if turn_off:
            detail += "; automatic recharge is now off until you pay or update your card"
        await conn.execute(
            """INSERT INTO notifications (notification_id, account_id, kind, recharge_id, amount_minor, currency,
                                          detail, created_at)
               VALUES ($1, $2, 'recharge_failed', $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
            f"recharge-failed:{failed.recharge_id}", account, failed.recharge_id, row["amount_minor"],
            row["currency"], detail, failed.failed_at,
        )
        log.warning("recharge failed", account_id=account, recharge_id=failed.recharge_id, code=failed.code,
                    failures=outcome.failures, auto_off=turn_off)
        out: list[Event] = [failed.model_copy(update={"account_id": account})]
        if turn_off:
            out.append(AutoRechargeDisabled(account_id=account, failures=outcome.failures, cause=failed.recharge_id))
        return out

    async def _decide(self, conn: asyncpg.Connection, accounts: dict[str, str | None], now: datetime) -> list[Event]:
        """The rules, once per account and batch: at most one recharge requested, keys suspended or restored."""
        out: list[Event] = []
        for b in await store.balances_for_rules(conn, accounts):
            account = b["account_id"]
            state = RechargeState(
                balance_minor=b["balance_minor"], threshold_minor=b["threshold_minor"],
                recharge_minor=b["recharge_minor"], auto_recharge=b["auto_recharge"],
                has_card=bool(b["customer_id"] and b["payment_method_id"]), in_flight=b["in_flight"],
                failures=b["failures"], backoff_until=b["backoff_until"],
            )
            if should_recharge(state, now):
                out.append(await self._request(conn, b, now))
            action = key_action(b["balance_minor"], b["keys_suspended"], self.config.policy)
            if action is not None:
                seq = b["key_decisions"] + 1
                await conn.execute(
                    "UPDATE balances SET keys_suspended = $2, key_decisions = $3 WHERE account_id = $1",
                    account, action == "suspend", seq,
                )
                kind = KeySuspended if action == "suspend" else KeyRestored
                reason = "payg_exhausted" if action == "suspend" else "payg_credit"
                out.append(kind(account_id=account, reason=reason, cause=f"payg:{seq}", effective_at=now, sequence=seq))
        return out

    async def _request(self, conn: asyncpg.Connection, b: asyncpg.Record, now: datetime) -> RechargeRequested:
        seq = b["recharge_seq"] + 1
        event = RechargeRequested(
            account_id=b["account_id"], recharge_id=recharge_id(b["account_id"], seq), seq=seq,
            amount_minor=b["recharge_minor"], currency=b["currency"], customer_id=b["customer_id"],
            payment_method_id=b["payment_method_id"], requested_at=now,
        )
        await conn.execute(
            """INSERT INTO recharges (recharge_id, account_id, seq, amount_minor, currency, customer_id,
                                      payment_method_id, idempotency_key, requested_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $1, $8)""",
            event.recharge_id, event.account_id, seq, event.amount_minor, event.currency, event.customer_id,
            event.payment_method_id, now,
        )
        await conn.execute("UPDATE balances SET recharge_seq = $2 WHERE account_id = $1", event.account_id, seq)
        log.info("recharge requested", account_id=event.account_id, recharge_id=event.recharge_id,
                 amount_minor=event.amount_minor, balance_minor=b["balance_minor"])
        return event


def parked_topup(envelope_json: str) -> tuple[TopUp, Envelope]:
    """A parked top-up as it was logged: it was one when parked, so it still reads as one."""
    envelope, event = REGISTRY.decode(envelope_json.encode())
    topup = topup_of(event) if isinstance(event, StripeEventReceived) else None
    if topup is None:
        raise RuntimeError(f"parked top-up {envelope.event_id} no longer reads as a top-up")
    return topup, envelope


def recharge_event_id(settled: RechargeSettled) -> uuid.UUID:
    return natural_event_id("payg-credit", settled.payment_intent_id)
