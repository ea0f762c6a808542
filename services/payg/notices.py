"""What the PAYG recharger sends people: the on-session Checkout that tops up a balance (and saves the card), and
the email telling a customer an automatic recharge did not go through. Pure: parameters and messages, no I/O."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import asyncpg

from jobmeter.settings import Settings
from services.accounts.profiles import recipient


def checkout_params(
    settings: Settings, account_id: str, amount_minor: int | None, customer: str | None
) -> dict[str, Any]:
    """A one-time Checkout Session that tops up the balance and saves the card for off-session recharges."""
    if amount_minor is not None:
        item: dict[str, Any] = {
            "price_data": {"currency": settings.jobmeter_payg_currency, "unit_amount": amount_minor,
                           "product_data": {"name": "jobmeter prepaid balance"}},
            "quantity": 1,
        }
    elif settings.stripe_payg_topup_price_id:
        item = {"price": settings.stripe_payg_topup_price_id, "quantity": 1}
    else:
        raise ValueError("give an amount, or set STRIPE_PAYG_TOPUP_PRICE_ID")
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [item],
        "payment_intent_data": {"setup_future_usage": "off_session"},
        "metadata": {"account_id": account_id, "purpose": "payg_topup"},
        "client_reference_id": account_id,
        "success_url": f"{settings.jobmeter_payg_return_url}?topup=done",
        "cancel_url": f"{settings.jobmeter_payg_return_url}?topup=cancelled",
    }
    if customer:
        params["customer"] = customer
    else:
        params["customer_creation"] = "always"
    return params


def compose(row: asyncpg.Record, url: str, sender: str, contact: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    # No invoice names an address for a recharge: the account's contact, else the billing inbox passes it on.
    message["To"] = recipient(None, contact, sender)
    message["Subject"] = "Your automatic top-up did not go through"
    message["Message-ID"] = f"<{row['notification_id']}@jobmeter>"
    minor = row["amount_minor"]
    amount = f"{minor // 100}.{minor % 100:02d} {row['currency'].upper()}"  # two-decimal currencies
    message.set_content(
        f"Account {row['account_id']}: {row['detail']}.\n\nTop up {amount} here, with your card present:\n{url}\n"
    )
    return message
