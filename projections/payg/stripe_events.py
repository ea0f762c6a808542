"""What a Stripe event means for a PAYG balance: a top-up to credit, a recharge to settle, or nothing. Pure.

Top-ups arrive as `checkout.session.completed` (or `…async_payment_succeeded`) of a `mode=payment` session whose
`metadata.account_id` (or `client_reference_id`, for a Payment Link) names the account. Recharges arrive as
`payment_intent.succeeded` / `payment_intent.payment_failed` carrying our `metadata.recharge_id`, or, when that
webhook is late, as our own `RechargeConfirmed` (the reconciler asked Stripe): both settle the same way.
Money going back arrives as `charge.refunded` (the charge, with its cumulative `amount_refunded`) and
`charge.dispute.created` / `charge.dispute.closed` (the dispute: no customer, but the charge's PaymentIntent).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events.payg import RechargeConfirmed
from events.stripe import StripeEventReceived

TOPUP_EVENTS = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
DISPUTE_EVENTS = frozenset({"charge.dispute.created", "charge.dispute.closed"})


@dataclass(frozen=True)
class TopUp:
    account_id: str
    session_id: str
    amount_minor: int
    currency: str
    customer_id: str | None
    ours: bool = False  # opened by `jobmeter payg topup` (metadata.purpose = payg_topup)
    payment_intent_id: str | None = None  # its PaymentIntent, whose payment method is the card it saved


@dataclass(frozen=True)
class RechargeSettled:
    account_id: str | None
    recharge_id: str
    payment_intent_id: str
    succeeded: bool
    amount_minor: int
    currency: str
    code: str | None
    message: str
    at: datetime


@dataclass(frozen=True)
class Refund:
    """A charge's refunds so far: `refunded_minor` is Stripe's cumulative `amount_refunded`, not this refund's."""

    charge_id: str
    payment_intent_id: str
    refunded_minor: int
    currency: str


@dataclass(frozen=True)
class Dispute:
    dispute_id: str
    payment_intent_id: str
    amount_minor: int
    currency: str
    status: str  # needs_response, …, won, lost; warning_* for an inquiry, which withdraws no funds
    closed: bool  # from charge.dispute.closed


def _text(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _amount(obj: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def topup_of(event: StripeEventReceived) -> TopUp | None:
    """The top-up a completed, paid, one-time Checkout Session brings; None if the event is not one."""
    obj = event.data_object
    if event.type not in TOPUP_EVENTS or obj.get("mode") != "payment" or obj.get("payment_status") != "paid":
        return None
    account = _text(_metadata(obj), "account_id") or _text(obj, "client_reference_id") or event.account_id
    session_id, amount, currency = _text(obj, "id"), _amount(obj, "amount_total"), _text(obj, "currency")
    if account is None or session_id is None or amount is None or currency is None:
        return None
    customer = obj.get("customer")
    ours = _metadata(obj).get("purpose") == "payg_topup"
    intent = _text(obj, "payment_intent")
    return TopUp(account, session_id, amount, currency.lower(), customer if isinstance(customer, str) else None, ours,
                 intent if intent and intent.startswith("pi_") else None)


def recharge_settled(event: StripeEventReceived) -> RechargeSettled | None:
    """The outcome of one of our off-session recharges; None for any other PaymentIntent or event."""
    if event.type not in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        return None
    obj = event.data_object
    metadata = _metadata(obj)
    recharge_id, pi = _text(metadata, "recharge_id"), _text(obj, "id")
    if recharge_id is None or pi is None:
        return None
    succeeded = event.type == "payment_intent.succeeded"
    error = obj.get("last_payment_error")
    error = error if isinstance(error, dict) else {}
    return RechargeSettled(
        account_id=_text(metadata, "account_id") or event.account_id,
        recharge_id=recharge_id,
        payment_intent_id=pi,
        succeeded=succeeded,
        amount_minor=(_amount(obj, "amount_received", "amount") if succeeded else _amount(obj, "amount")) or 0,
        currency=(_text(obj, "currency") or "").lower(),
        code=None if succeeded else _text(error, "code") or _text(error, "decline_code"),
        message="" if succeeded else (_text(error, "message") or ""),
        at=event.created,
    )


def confirmed_settlement(event: RechargeConfirmed) -> RechargeSettled:
    """A success found by asking Stripe settles the recharge exactly as its `payment_intent.succeeded` would."""
    return RechargeSettled(
        account_id=event.account_id, recharge_id=event.recharge_id, payment_intent_id=event.payment_intent_id,
        succeeded=True, amount_minor=event.amount_minor, currency=event.currency, code=None, message="",
        at=event.confirmed_at,
    )


def _intent(obj: dict[str, Any]) -> str | None:
    """The object's PaymentIntent id (a string, or an expanded object)."""
    value = obj.get("payment_intent")
    intent = _text(value, "id") if isinstance(value, dict) else _text(obj, "payment_intent")
    return intent if intent and intent.startswith("pi_") else None


def refund_of(event: StripeEventReceived) -> Refund | None:
    """The refunds of a charge paid through a PaymentIntent; None if the event is not one."""
    obj = event.data_object
    if event.type != "charge.refunded" or obj.get("object", "charge") != "charge":
        return None
    charge, intent = _text(obj, "id"), _intent(obj)
    refunded, currency = _amount(obj, "amount_refunded"), _text(obj, "currency")
    if charge is None or intent is None or refunded is None or currency is None:
        return None
    return Refund(charge, intent, refunded, currency.lower())


def dispute_of(event: StripeEventReceived) -> Dispute | None:
    """A dispute opened or closed on a charge paid through a PaymentIntent; None if the event is not one."""
    obj = event.data_object
    if event.type not in DISPUTE_EVENTS or obj.get("object", "dispute") != "dispute":
        return None
    dispute, intent = _text(obj, "id"), _intent(obj)
    amount, currency, status = _amount(obj, "amount"), _text(obj, "currency"), _text(obj, "status")
    if dispute is None or intent is None or amount is None or currency is None or status is None:
        return None
    return Dispute(dispute, intent, amount, currency.lower(), status, event.type == "charge.dispute.closed")
