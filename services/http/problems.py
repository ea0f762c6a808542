"""What the API's routes share in its OpenAPI document: the bodies of its refusals, and its timestamps.

Every refusal is a JSON object whose `detail` says why, in words. A request that did not validate also lists
`errors`, field by field (services.http.app's validation handler); a route's own 422s carry `detail` alone.
Routes declare their refusals with `problems(...)`, so the document says what each one can answer and a client
(or tests/integration/test_api_fuzz.py) can hold the API to it.
"""

from __future__ import annotations

from typing import Annotated, Any

import stripe
from fastapi import HTTPException
from pydantic import BaseModel, Field, WithJsonSchema

from services.stripe_adapter.client import is_retryable

# As the rows and commands hand them over (services.platform.rows.iso): ISO 8601 text, kept byte for byte.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class Problem(BaseModel):
    detail: str = Field(description="Why the request was refused, for a person.")


class FieldError(BaseModel):
    field: str = Field(description="Where: `body.account_id`, `query.from`, …")
    message: str


class Invalid(Problem):
    errors: list[FieldError] | None = Field(default=None, description="Per field, when the request did not validate.")


REASONS: dict[int, str] = {
    400: "The body could not be read (not UTF-8 JSON).",
    401: "No valid bearer token.",
    403: "The credential is known but may not be used.",
    404: "No such account or resource.",
    409: "Conflicts with the current state (already exists, already revoked, another billing model).",
    413: "The body is too large.",
    422: "The request is not valid as sent.",
    503: "A service it depends on is unavailable; retry.",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these refusal codes, each with its reason and body."""
    declared: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        declared[code] = {"model": Invalid if code == 422 else Problem, "description": REASONS[code]}
        if code == 401:
            declared[code]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}
    return declared


def stripe_refusal(error: stripe.StripeError) -> HTTPException:
    """A failed Stripe call as the answer to the request that made it: 503 if trying again may work, else 422 with
    Stripe's reason. Never a 500: Stripe saying no is not our failure."""
    if is_retryable(error):
        return HTTPException(503, detail="Stripe is unavailable; try again")
    return HTTPException(422, detail=f"Stripe refused it: {error.user_message or error}")
