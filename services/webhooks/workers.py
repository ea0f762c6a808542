"""Everything that runs beside the `webhooks` consumer: the webhook sender and the alert mailer (the two channels
of its outbox), and the forecast watcher (it skips the alerts this consumer has already folded)."""

from __future__ import annotations

import asyncio

from services.ledger.forecast_watch import run_forecast_watch
from services.platform.resources import Resources
from services.webhooks.alert_mail import run_alert_mailer
from services.webhooks.sender import run_webhook_sender


async def run_webhook_workers(res: Resources, schema: str) -> None:
    await asyncio.gather(run_webhook_sender(res, schema), run_alert_mailer(res, schema),
                         run_forecast_watch(res, schema))
