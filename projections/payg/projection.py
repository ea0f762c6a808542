"""The PAYG balance fold: jobs debit, top-ups and recharges credit, refunds and disputes of those take the money
back (`projections.payg.reversals`), and the rules run once per batch.

Billable here: `JobCompleted` on the direct channel (RapidAPI bills its own traffic) of an account whose model is
`payg`, as this projection's own view of the registry says (`projections.account_view`, folded from the accounts
topic): a job of an account not registered yet waits in `parked_jobs` and is debited when the registration says
PAYG, dropped when it says otherwise. Every debit and credit is a row of `movements`
keyed by the identity of its cause, so a job or a Stripe event seen twice moves the balance once. What the rules
decide (a balance gone below its threshold, a recharge, a key suspension or restoration) and every movement go to
this schema's outbox as events, in the transaction that moves the positions; `services.payg.recharger` charges
what is requested, and `services.payg.reconciler` looks up at Stripe the card a top-up saved (`card_captures` →
`PaygCardSaved`) and the outcome of a recharge whose webhook is late (→ `RechargeConfirmed` / `RechargeFailed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import structlog

from events.accounts import StripeCustomerLinked
from events.envelope import Envelope, Event
from events.payg import MAX_DEBITED_JOBS, BalanceCredited, BalanceDebited, DebitedJob
from jobmeter.settings import Settings
from projections.account_view import Elsewhere, accounts_of, fold_accounts, lock_accounts
from projections.outbox import emit
from projections.payg import debits, recharge_store, recharges, reversals, store
from projections.payg.batch import Batch, parked_topup
from projections.payg.config import PaygConfig
from projections.payg.rules import price_of, should_capture_card
from projections.payg.store import Charge, Movement
from projections.payg.stripe_events import TopUp
from projections.projection import Projection
from projections.records import Recorded

log = structlog.get_logger(__name__)

PRODUCER = "jobmeter-payg"


@dataclass(frozen=True)
class Admitted:
    """Who a batch is about: the accounts the registry knows, the PAYG ones among them (with their Stripe
    customer), and what was parked for the accounts it has just registered."""

    known: set[str]
    payg: dict[str, str | None]
    released_jobs: list[Charge]
    released_topups: list[tuple[TopUp, Envelope]]


class PaygBalances(Projection):
    name = "payg"
    not_swappable = (
        "its `recharges` and `notifications` tables are which cards were charged and which customers emailed; "
        "a rebuild has them unsent, so a recharge in flight could be charged again once Stripe's idempotency key "
        "has expired, and failed-recharge notices would be emailed again"
    )
    schema = "payg"
    topics = ("accounts", "jobs", "stripe", "payg")
    channel = "direct"  # RapidAPI bills its own traffic
    migrations = Path(__file__).parent / "migrations"
    # What a replay must reproduce exactly: every movement, and which jobs still wait for their account. When a
    # recharge is requested depends on how the log was cut into batches, so balances' bookkeeping, recharges and
    # notifications are not compared; nor is `parked_reversals` (its order column and wall-clock time differ by
    # run; what its refunds and disputes moved is in `movements`).
    tables = ("movements", "accounts", "parked_jobs")
    emits = True
    chunk = 2000  # a handful of round trips per apply whatever its size: see Projection.chunk

    def __init__(self, config: PaygConfig | None = None) -> None:
        self._config = config
        self.billed_elsewhere: Elsewhere = Elsewhere("payg")

    def configured(self, settings: Settings) -> PaygBalances:
        return PaygBalances(PaygConfig.of(settings))

    @property
    def config(self) -> PaygConfig:
        if self._config is None:
            raise RuntimeError("PaygBalances folds with prices and policy from settings: use .configured(settings)")
        return self._config

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Recorded[Event]]) -> None:
        batch = Batch.of(events)
        # Before anything reads a payment: a credit and its refund folded at once by two consumers go in turn.
        await reversals.lock_payments(conn, batch.reversed_intents() | batch.credited_intents())
        # A recharge's account is the one we recorded, whatever the PaymentIntent's metadata says.
        settling = await recharge_store.recharge_accounts(conn, [s.recharge_id for s in batch.settlements])
        # A refund's or dispute's account is the one its payment credited (before this batch, or in it: then the
        # account is among the batch's own).
        reversing = {c.account_id for c in (await store.credited_payments(conn, batch.reversed_intents())).values()}
        candidates = batch.accounts() | set(settling) | reversing
        if not candidates:
            await reversals.park(conn, batch)  # refunds and disputes of payments that credited nothing (yet)
            return  # our own events coming back from the bus, other Stripe events: nothing to do
        admitted = await self._admit(conn, batch, sorted(candidates))
        released = {t.payment_intent_id for t, _ in admitted.released_topups if t.payment_intent_id}
        await reversals.lock_payments(conn, released)
        cfg, now, payg = self.config, batch.at, admitted.payg
        await store.open_balances(conn, payg, cfg.defaults, now)
        await self._configure(conn, batch, payg, now)
        out: list[Event] = []
        out += await self._debit(conn, [j for j in batch.jobs + admitted.released_jobs if j.account_id in payg], now)
        out += await self._top_ups(conn, batch, admitted, now)
        for settled in batch.settlements:
            out += await recharges.settle(conn, settled, cfg, now)
        for failed in batch.failures:
            out += await recharges.fail(conn, failed, cfg.policy)
        for canceled in batch.cancels:
            await recharges.cancel(conn, canceled)
        out += await reversals.reverse(conn, batch, payg, cfg, batch.credited_intents() | released, now)
        out += await recharges.decide(conn, payg, cfg.policy, now)
        await emit(conn, out, producer=PRODUCER)

    async def _admit(self, conn: asyncpg.Connection, batch: Batch, candidates: list[str]) -> Admitted:
        """Fold the registrations into this projection's view of the registry; park what is for accounts it does
        not know yet, and take out what was parked for the ones it now does."""
        await lock_accounts(conn, "payg", candidates)
        await fold_accounts(conn, batch.registrations)
        known = await accounts_of(conn, candidates)
        self.billed_elsewhere.learn(known)
        await store.park_jobs(conn, [j for j in batch.jobs if j.account_id not in known])
        await store.park_topups(conn, [(t.session_id, t.account_id, e.model_dump_json())
                                       for t, e in batch.topups if t.account_id not in known])
        registered = [a for a in {r.account_id for r in batch.registrations} if a in known]
        released = await store.release_parked(conn, registered)
        released_topups = [parked_topup(envelope) for envelope in await store.release_topups(conn, registered)]
        payg = {a: view.customer_id for a, view in known.items() if view.model == "payg"}
        return Admitted(set(known), payg, released, released_topups)

    async def _configure(self, conn: asyncpg.Connection, batch: Batch, payg: dict[str, str | None],
                         now: datetime) -> None:
        """Recharge settings, linked Stripe customers and saved cards, for the PAYG accounts."""
        for config in batch.configs:
            if config.account_id in payg:
                await store.configure(conn, config, now)
        for event in batch.registrations:
            if isinstance(event, StripeCustomerLinked) and event.account_id in payg:
                await store.set_customer_if_missing(conn, event.account_id, event.stripe_customer_id)
        for card in batch.cards:
            if card.account_id in payg and await store.save_card(conn, card, now):
                await recharge_store.card_saved(conn, card.payment_intent_id, now)

    async def _debit(self, conn: asyncpg.Connection, jobs: list[Charge], now: datetime) -> list[Event]:
        prices, currency = self.config.prices, self.config.defaults.currency
        new = await debits.add_debits(conn, jobs, [price_of(prices, j.api) for j in jobs], now)
        debited = [(job.account_id, DebitedJob(api=job.api, job_id=job.job_id, amount_minor=price))
                   for job, price in new]
        return list(debit_events(debited, currency))

    async def _top_ups(self, conn: asyncpg.Connection, batch: Batch, admitted: Admitted,
                       now: datetime) -> list[Event]:
        """The batch's top-ups, then those parked for the accounts it registered."""
        out: list[Event] = []
        for topup, envelope in batch.topups:
            if topup.account_id in admitted.payg:
                out += await self._top_up(conn, topup, envelope, now)
            elif topup.ours and topup.account_id in admitted.known:
                # Money arrived for a balance we do not keep: dead-letter it, with the reason.
                raise ValueError(f"top-up {topup.session_id} is for {topup.account_id!r}, not a PAYG account")
        for topup, envelope in admitted.released_topups:
            if topup.account_id in admitted.payg:
                out += await self._top_up(conn, topup, envelope, now)
            elif topup.ours:  # the record at hand is the registration: the top-up waits, refused, for an operator
                await store.refuse_topup(conn, topup.session_id, topup.account_id, envelope.model_dump_json(), now)
                log.error("top-up for an account that is not PAYG", session_id=topup.session_id,
                          account_id=topup.account_id)
        return out

    async def _top_up(self, conn: asyncpg.Connection, topup: TopUp, envelope: Envelope, now: datetime) -> list[Event]:
        self.config.check_currency(topup.currency, f"checkout session {topup.session_id}")
        movement = Movement(f"checkout:{topup.session_id}", topup.account_id, "topup", topup.amount_minor,
                            topup.session_id, envelope.occurred_at, envelope.event_id, topup.payment_intent_id)
        await store.set_customer_if_missing(conn, topup.account_id, topup.customer_id)
        if not await store.add_movements(conn, [movement], now):
            return []
        intent = topup.payment_intent_id
        if intent and should_capture_card(intent, await store.has_card(conn, topup.account_id)):
            # No Stripe call in a fold: the worker beside the recharger looks the card up and publishes it.
            await recharge_store.request_card_capture(
                conn, topup.account_id, intent, topup.session_id, topup.customer_id, now
            )
        return [BalanceCredited(account_id=topup.account_id, amount_minor=topup.amount_minor,
                                currency=topup.currency, source="topup", reference=topup.session_id)]


def debit_events(debited: Sequence[tuple[str, DebitedJob]], currency: str) -> list[BalanceDebited]:
    """The debits of a batch as events: an account's jobs together, in log order, MAX_DEBITED_JOBS at most each."""
    by_account: dict[str, list[DebitedJob]] = {}
    for account_id, job in debited:
        by_account.setdefault(account_id, []).append(job)
    return [
        BalanceDebited(account_id=account_id, amount_minor=sum(j.amount_minor for j in part), currency=currency,
                       jobs=part)
        for account_id, jobs in by_account.items()
        for part in (jobs[i : i + MAX_DEBITED_JOBS] for i in range(0, len(jobs), MAX_DEBITED_JOBS))
    ]
