"""`POST /webhooks/stripe`: Stripe's deliveries, verified and put on the bus before we answer 2xx."""

from __future__ import annotations

import asyncpg
import structlog
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.stripe_adapter.webhooks import WebhookRefused, receive

log = structlog.get_logger(__name__)
router = APIRouter(tags=["webhooks"])

# Stripe's events are a few kB; anything far larger is not one of them.
MAX_BODY_BYTES = 512 * 1024


def problem(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"detail": reason}, status_code=status)


@router.post("/webhooks/stripe", responses={400: {}, 413: {}, 503: {}})
async def stripe_webhook(request: Request) -> JSONResponse:
    """200 once Kafka has the event (or had it from an earlier delivery); 400 with the reason if refused."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return problem(413, f"body over {MAX_BODY_BYTES} bytes")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return problem(413, f"body over {MAX_BODY_BYTES} bytes")
    try:
        receipt = await receive(request.app.state.runtime.res, body, request.headers.get("stripe-signature"))
    except WebhookRefused as error:
        log.info("stripe webhook refused", reason=str(error))
        return problem(400, str(error))
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
