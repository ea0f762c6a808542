"""Sending email: the adapter protocol, a log sink for local use, and SMTP over verified TLS (stdlib smtplib, in a
thread)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import structlog

from jobmeter.settings import Settings

log = structlog.get_logger(__name__)


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


class InsecureServer(smtplib.SMTPException):
    """Not sent: the server offers no STARTTLS, and the credentials would cross the network in clear. An
    SMTPException, so the notifier keeps the notification unsent and retries it like any failed send."""


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificates checked against `ca_file` (a private server's CA) or the system's store, hostname included."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)


class SmtpMailer:
    """Mail through an SMTP server, its certificate always verified (`ca_file`, or the system's CAs).

    - `smtps://user:pass@host:port` (port 465 by default): TLS from the first byte.
    - `smtp://user:pass@host:port` (port 25 by default): STARTTLS whenever the server offers it, and required
      when a username or password is set: a server (or an attacker in between, who can strip the offer) that
      does not offer it gets nothing, so the credentials are never sent in clear. Without credentials and
      without STARTTLS offered, the message goes in plain text: that is a local relay on a trusted network.
      Once STARTTLS is offered, a failed handshake or certificate check fails the send (no plain fallback).
    """

    def __init__(self, url: str, *, ca_file: Path | None = None, timeout: float = 20.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("JOBMETER_SMTP_URL must look like smtp://user:pass@host:port or smtps://…")
        self.tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.tls else 25)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self.context = tls_context(ca_file)

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        # smtplib checks the certificate against the host we connect to (`server_hostname`), for both modes.
        smtp = (smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.context) if self.tls
                else smtplib.SMTP(self.host, self.port, timeout=self.timeout))
        with smtp:
            if not self.tls:
                self._starttls(smtp)
            if self.user is not None or self.password is not None:
                smtp.login(self.user or "", self.password or "")
            smtp.send_message(message)

    def _starttls(self, smtp: smtplib.SMTP) -> None:
        smtp.ehlo()  # the server's extensions are known only after EHLO
        if smtp.has_extn("starttls"):
            smtp.starttls(context=self.context)
            smtp.ehlo()  # what the server offers may differ once encrypted (AUTH, often)
        elif self.user is not None or self.password is not None:
            raise InsecureServer(
                f"not sent: {self.host}:{self.port} does not offer STARTTLS, and JOBMETER_SMTP_URL has credentials "
                "that would be sent in clear; use smtps://, or a server that offers STARTTLS"
            )


def mailer_for(settings: Settings) -> Mailer:
    if settings.jobmeter_smtp_url is None:
        return LogMailer()
    return SmtpMailer(settings.jobmeter_smtp_url.get_secret_value(), ca_file=settings.jobmeter_smtp_ca_file)
