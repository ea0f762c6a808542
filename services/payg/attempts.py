"""The recharger's pure pieces: what an attempt sends, how long it waits after a transient error, what counts as
history, and which of a customer's PaymentIntents is a recharge's. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg
import stripe

Result = Literal["sent", "failed", "postponed", "canceled"]


@dataclass(frozen=True)
class ChargeOutcome:
    sent: int = 0
    failed: int = 0
    postponed: int = 0
    canceled: int = 0

    @property
    def claimed(self) -> int:
        return self.sent + self.failed + self.postponed + self.canceled


def payment_intent_params(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "customer": row["customer_id"],
        "payment_method": row["payment_method_id"],
        "amount": row["amount_minor"],
        "currency": row["currency"],
        "off_session": True,
        "confirm": True,
        "metadata": {"account_id": row["account_id"], "recharge_id": row["recharge_id"]},
    }


def retry_delay(attempts: int, first: timedelta, most: timedelta) -> timedelta:
    """Exponential back-off after the `attempts`-th attempt failed for a reason that may pass."""
    factor: int = 2 ** max(0, min(attempts - 1, 30))
    return min(first * factor, most)


def from_history(row: asyncpg.Record, history: timedelta) -> bool:
    """Recorded long after its jobs were logged: a consumer far behind, or the log folded again."""
    recorded: datetime = row["recorded_at"]
    requested: datetime = row["requested_at"]
    return recorded - requested > history


def pick_intent(intents: list[stripe.PaymentIntent], recharge_id: str) -> stripe.PaymentIntent | None:
    """The recharge's PaymentIntent among a customer's: a succeeded one if any, else the newest."""
    ours = [i for i in intents if i.metadata is not None and "recharge_id" in i.metadata
            and i.metadata["recharge_id"] == recharge_id]
    if not ours:
        return None
    return max(ours, key=lambda i: (i.status == "succeeded", i.created or 0))
