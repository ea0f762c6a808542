"""Telling customers their keys were suspended or restored: the notifier worker and its email adapters.

The key lifecycle writes a notification row in the transaction that decided the change; this worker sends
it and marks it sent only after the send succeeded (a crash in between sends it again, with the same
Message-ID, so a mail system can drop the copy). SMTP runs in a thread (stdlib smtplib); without
JOBMETER_SMTP_URL the messages go to the log instead.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import unquote, urlsplit

import asyncpg
import structlog

from jobmeter.settings import Settings
from projections.db import transaction
from services.resources import Resources

log = structlog.get_logger(__name__)

SUBJECTS = {
    "suspended": "Your API keys are suspended: payment failed",
    "restored": "Your API keys work again",
}


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class LogMailer:
    """For local use: the message goes to the log, and counts as sent."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        self.sent.append(message)
        log.info("notification (log sink)", to=message["To"], subject=message["Subject"],
                 message_id=message["Message-ID"], body=message.get_content().strip())


class SmtpMailer:
    """smtp://user:pass@host:port (STARTTLS when the server offers it) or smtps://… (TLS from the start)."""

    def __init__(self, url: str, *, timeout: float = 20.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("JOBMETER_SMTP_URL must look like smtp://user:pass@host:port or smtps://…")
        self.tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.tls else 25)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        smtp_class = smtplib.SMTP_SSL if self.tls else smtplib.SMTP
        with smtp_class(self.host, self.port, timeout=self.timeout) as smtp:
            if not self.tls and smtp.has_extn("starttls"):
                smtp.starttls()
            if self.user:
                smtp.login(self.user, self.password or "")
            smtp.send_message(message)


def mailer_for(settings: Settings) -> Mailer:
    if settings.jobmeter_smtp_url is None:
        return LogMailer()
    return SmtpMailer(settings.jobmeter_smtp_url.get_secret_value())


def compose(row: asyncpg.Record, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    # Without a customer address on file the notice goes to the billing inbox, so a person can pass it on.
    message["To"] = row["recipient"] or sender
    message["Subject"] = SUBJECTS[row["kind"]]
    message["Message-ID"] = f"<{row['notification_id']}@jobmeter>"
    if row["kind"] == "suspended":
        text = (f"The API keys of account {row['account_id']} are suspended.\n\nReason: {row['reason']}.\n\n"
                "Pay the open invoice and they work again within a minute.\n")
    else:
        text = f"The API keys of account {row['account_id']} work again.\n\nReason: {row['reason']}.\n"
    message.set_content(text)
    return message


async def notify_once(
    pool: asyncpg.Pool, schema: str, mailer: Mailer, sender: str, *, limit: int = 20
) -> tuple[int, int]:
    """Send up to `limit` unsent notifications, oldest first; returns how many were sent and how many failed."""
    sent = failed = 0
    async with transaction(pool, schema) as conn:
        rows = await conn.fetch(
            "SELECT * FROM notifications WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED", limit
        )
        for row in rows:
            try:
                await mailer.send(compose(row, sender))
            except (OSError, smtplib.SMTPException) as error:
                log.warning("notification not sent, will retry", notification_id=str(row["notification_id"]),
                            error=str(error))
                await conn.execute(
                    "UPDATE notifications SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                    row["id"], str(error)[:500],
                )
                failed += 1
                continue
            await conn.execute(
                "UPDATE notifications SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1",
                row["id"],
            )
            sent += 1
    return sent, failed


async def run_notifier(res: Resources, schema: str, *, idle_seconds: float = 0.2) -> None:
    """Send notifications until cancelled; back off while mail or Postgres is unreachable."""
    mailer = mailer_for(res.settings)
    delay = idle_seconds
    while True:
        try:
            sent, failed = await notify_once(res.pool, schema, mailer, res.settings.jobmeter_notify_from)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("notifier failed, retrying", error=str(error))
            sent, failed = 0, 1
        delay = min(delay * 2, 30.0) if failed else idle_seconds
        if failed or not sent:
            await asyncio.sleep(delay)
