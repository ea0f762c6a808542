"""Identifiers and small value types shared by every event."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

# Printable, no spaces: identifiers end up in URLs, Kafka keys, Stripe metadata and CSV files.
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]*$"

AccountId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_ID_PATTERN)]
JobId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_ID_PATTERN)]
ApiName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_-]*$")]
Channel = Literal["direct", "rapidapi"]
JobMode = Literal["sync", "async"]
BillingModel = Literal["subscription", "payg", "rapidapi"]
StripeCustomerId = Annotated[str, StringConstraints(pattern=r"^cus_[A-Za-z0-9]+$", max_length=255)]
NonNegativeInt = Annotated[int, Field(ge=0)]
