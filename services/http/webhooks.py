"""`POST /webhooks/stripe`: Stripe's deliveries, verified and put on the bus before we answer 2xx."""

from __future__ import annotations

import asyncpg
import structlog
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.http.problems import problems
from services.stripe_adapter.webhooks import StripeUnreachable, WebhookRefused, receive

log = structlog.get_logger(__name__)
router = APIRouter(tags=["webhooks"])

# Stripe's events are a few kB; anything far larger is not one of them (the limit is applied by
# services.http.limits, for every route, before a body is read).
MAX_BODY_BYTES = 512 * 1024


def problem(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"detail": reason}, status_code=status)


class Received(BaseModel):
    received: bool
    id: str = Field(description="Stripe's event id.")
    duplicate: bool = Field(description="Whether an earlier delivery of the event had been received.")


@router.post(
    "/webhooks/stripe",
    response_model=Received,
    responses=problems(400, 413, 503),
    # The body is read raw (its signature covers the exact bytes); the document still says what it is.
    openapi_extra={
        "parameters": [{"name": "Stripe-Signature", "in": "header", "required": True, "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
    },
)
async def stripe_webhook(request: Request) -> JSONResponse:
    """200 once Kafka has the event (or had it from an earlier delivery); 400 with the reason if refused.

    Takes snapshot events (webhook endpoints) and thin events (event destinations, `"object": "v2.core.event"`),
    whose body is fetched from Stripe before it goes on the bus."""
    body = await request.body()  # at most MAX_BODY_BYTES: services.http.limits answers 413 past it
    try:
        receipt = await receive(request.app.state.runtime.res, body, request.headers.get("stripe-signature"))
    except WebhookRefused as error:
        log.info("stripe webhook refused", reason=str(error))
        return problem(400, str(error))
    except StripeUnreachable as error:
        # A thin event whose body could not be fetched: Stripe delivers it again.
        log.warning("stripe thin event not fetched", error=str(error))
        return problem(503, "could not fetch the event from Stripe; retry later")
    except (TimeoutError, KafkaError) as error:
        # Not acknowledged, nothing logged: Stripe retries, and the retry is published.
        log.warning("stripe webhook not published", error=str(error))
        return problem(503, "the event log is unavailable; retry later")
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
            asyncpg.InsufficientResourcesError) as error:
        log.warning("stripe webhook not logged", error=str(error))
        return problem(503, "the webhook log is unavailable; retry later")
    log.info("stripe webhook received", stripe_event_id=receipt.stripe_event_id, duplicate=receipt.duplicate)
    return JSONResponse({"received": True, "id": receipt.stripe_event_id, "duplicate": receipt.duplicate})
