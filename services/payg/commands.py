"""Pay-as-you-go commands and reads: configure recharging, open a top-up, show a balance.

Configuration is a fact on the bus (`PaygConfigured`), folded by the payg consumer; a top-up is a Stripe
Checkout Session (or the configured Payment Link) whose completion, arriving as a webhook, credits the balance.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError

from events.codec import describe
from events.envelope import utcnow
from events.payg import PaygConfigured
from projections.accounts import queries as accounts
from projections.payg import queries
from projections.payg.store import Defaults
from services.payg.recharger import checkout_params
from services.platform.resources import Resources
from services.platform.rows import iso, plain
from services.stripe_adapter.client import make_client


class PaygError(ValueError):
    """A PAYG request that cannot be done as asked; `status` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def defaults(res: Resources) -> Defaults:
    s = res.settings
    return Defaults(s.jobmeter_payg_currency, s.jobmeter_payg_threshold_minor, s.jobmeter_payg_recharge_minor)


async def payg_account(res: Resources, account_id: str) -> dict[str, Any]:
    """The registry's row of a PAYG account; PaygError (404/409) if there is none or it is billed otherwise."""
    async with res.pool_for("accounts").acquire() as conn:
        row = await accounts.account(conn, account_id)
    if row is None:
        raise PaygError(f"no account {account_id!r}", 404)
    if row["model"] != "payg":
        raise PaygError(f"account {account_id!r} is billed by {row['model']}, not pay-as-you-go", 409)
    return dict(row)


async def _balance_row(res: Resources, account_id: str) -> dict[str, Any] | None:
    async with res.pool_for("payg").acquire() as conn:
        row = await queries.balance(conn, account_id)
    return dict(row) if row else None


async def configure(
    res: Resources,
    account_id: str,
    *,
    threshold_minor: int | None = None,
    recharge_minor: int | None = None,
    auto_recharge: bool | None = None,
    payment_method_id: str | None = None,
    customer_id: str | None = None,
) -> PaygConfigured:
    """Publish the account's new recharge settings; what is not given stays as it is."""
    account = await payg_account(res, account_id)
    current = await _balance_row(res, account_id) or {}
    d = defaults(res)
    try:
        event = PaygConfigured(
            account_id=account_id,
            threshold_minor=current.get("threshold_minor", d.threshold_minor) if threshold_minor is None
            else threshold_minor,
            recharge_minor=current.get("recharge_minor", d.recharge_minor) if recharge_minor is None
            else recharge_minor,
            auto_recharge=current.get("auto_recharge", False) if auto_recharge is None else auto_recharge,
            customer_id=customer_id or current.get("customer_id") or account["stripe_customer_id"],
            payment_method_id=payment_method_id,
            configured_at=utcnow(),
        )
    except ValidationError as error:
        raise PaygError(describe(error)) from None
    card = event.payment_method_id or current.get("payment_method_id")
    if event.auto_recharge and not (event.customer_id and card):
        raise PaygError("auto-recharge needs a Stripe customer and a saved card (--payment-method pm_…, or a top-up "
                        "through Checkout, which saves one)")
    await res.publisher.publish(event)
    return event


async def open_topup(res: Resources, account_id: str, amount_minor: int | None) -> dict[str, Any]:
    """Where the customer tops up: the Payment Link if one is configured, else a new one-time Checkout Session
    that saves the card for off-session recharges. Its completion credits the balance (once)."""
    await payg_account(res, account_id)
    if amount_minor is not None and amount_minor <= 0:
        raise PaygError("amount must be a positive number of minor units")
    link = res.settings.next_public_stripe_payment_link_payg
    if link:
        url = f"{link}?{urlencode({'client_reference_id': account_id})}"
        return {"account_id": account_id, "kind": "payment_link", "url": url, "checkout_session_id": None}
    current = await _balance_row(res, account_id) or {}
    customer = current.get("customer_id") or (await payg_account(res, account_id))["stripe_customer_id"]
    try:
        params = checkout_params(res.settings, account_id, amount_minor, customer)
    except ValueError as error:
        raise PaygError(str(error)) from None
    session = await make_client(res.settings).v1.checkout.sessions.create_async(params)  # type: ignore[arg-type]
    return {"account_id": account_id, "kind": "checkout", "url": session.url, "checkout_session_id": session.id,
            "amount_minor": amount_minor, "currency": res.settings.jobmeter_payg_currency}


async def balance(res: Resources, account_id: str, *, recharges: int = 20) -> dict[str, Any]:
    """The account's balance, recharge settings and latest recharges (newest first)."""
    account = await payg_account(res, account_id)
    row = await _balance_row(res, account_id)
    d = defaults(res)
    async with res.pool_for("payg").acquire() as conn:
        history = await queries.recharge_history(conn, account_id, recharges)
    b = row or {}
    return {
        "account_id": account_id,
        "balance_minor": b.get("balance_minor", 0),
        "currency": b.get("currency", d.currency),
        "threshold_minor": b.get("threshold_minor", d.threshold_minor),
        "recharge_minor": b.get("recharge_minor", d.recharge_minor),
        "auto_recharge": b.get("auto_recharge", False),
        "recharge_in_flight": any(r["state"] == "requested" for r in history),
        "customer_id": b.get("customer_id") or account["stripe_customer_id"],
        "payment_method_id": b.get("payment_method_id"),
        "failures": b.get("failures", 0),
        "backoff_until": iso(b.get("backoff_until")),
        "keys_suspended": b.get("keys_suspended", False),
        "recharges": [plain(r) for r in history],
    }


async def balances(res: Resources) -> list[dict[str, Any]]:
    """Every PAYG account's balance, lowest first: the ones about to run out on top."""
    d = defaults(res)
    async with res.pool_for("payg").acquire() as conn:
        rows = await queries.balances(conn, d)
    return [dict(r) for r in rows]

