"""Telling customers their keys were suspended or restored: the notifier worker (mail goes out through
`services.platform.mail`).

The key lifecycle writes a notification row in the transaction that decided the change (its outbox); this
worker leases it, sends it with no transaction open, and marks it sent only after the send succeeded (a crash in
between sends it again once the lease runs out, with the same Message-ID, so a mail system can drop the copy).
SMTP runs in a thread (stdlib smtplib); without JOBMETER_SMTP_URL the messages go to the log instead.
"""

from __future__ import annotations

import smtplib
from datetime import timedelta
from email.message import EmailMessage

import asyncpg
import structlog

from events.envelope import utcnow
from projections.db import transaction
from projections.key_lifecycle import store
from services.accounts.profiles import Profiles, contacts_of, profiles_of, recipient
from services.platform.mail import Mailer, mailer_for
from services.platform.poll import PollPolicy, poll
from services.platform.resources import Resources

log = structlog.get_logger(__name__)

# Longer than any send takes (SMTP's own timeout is far shorter), so a lease only runs out for a notifier that died.
LEASE = timedelta(minutes=2)

SUBJECTS = {
    "suspended": "Your API keys are suspended: payment failed",
    "restored": "Your API keys work again",
}


def compose(row: asyncpg.Record, sender: str, contact: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    # The invoice's address, else the account's contact, else the billing inbox (a person passes it on).
    message["To"] = recipient(row["recipient"], contact, sender)
    message["Subject"] = SUBJECTS[row["kind"]]
    message["Message-ID"] = f"<{row['notification_id']}@jobmeter>"
    if row["kind"] == "suspended":
        text = (f"The API keys of account {row['account_id']} are suspended.\n\nReason: {row['reason']}.\n\n"
                "Pay the open invoice and they work again within a minute.\n")
    else:
        text = f"The API keys of account {row['account_id']} work again.\n\nReason: {row['reason']}.\n"
    message.set_content(text)
    return message


class NotSent(OSError):
    """Some notifications of a pass could not be sent (mail out of reach): the notifier backs off, as for any
    server out of reach, and retries them."""


async def notify_once(
    pool: asyncpg.Pool, schema: str, mailer: Mailer, sender: str, *, limit: int = 20, lease: timedelta = LEASE,
    profiles: Profiles | None = None,
) -> tuple[int, int]:
    """Send up to `limit` unsent notifications, oldest first; returns how many were sent and how many failed.

    Each is leased in a short transaction, sent with none open, then marked in one of its own: a failed commit can
    no longer undo the mark of a message already sent, and a crash resends at most the one being sent (same
    Message-ID, so a mail system can drop the copy). `profiles` gives the accounts' contact addresses, for a
    notice whose invoice named none."""
    sent = failed = 0
    async with transaction(pool, schema) as conn:
        claimed = await store.claim_unsent(conn, limit, utcnow(), lease)
    contacts = await contacts_of(profiles, [r["account_id"] for r in claimed if not r["recipient"]])
    for row in claimed:
        try:
            await mailer.send(compose(row, sender, contacts.get(row["account_id"])))
        except (OSError, smtplib.SMTPException) as error:
            log.warning("notification not sent, will retry", notification_id=str(row["notification_id"]),
                        error=str(error))
            async with transaction(pool, schema) as conn:
                await store.mark_failed(conn, row["id"], str(error))
            failed += 1
            continue
        async with transaction(pool, schema) as conn:
            await store.mark_sent(conn, row["id"])
        sent += 1
    return sent, failed


async def run_notifier(res: Resources, schema: str, *, idle_seconds: float = 0.2) -> None:
    """Send notifications until cancelled; back off while mail or Postgres is unreachable."""
    mailer, profiles = mailer_for(res.settings), profiles_of(res)

    async def one_pass() -> bool:
        sent, failed = await notify_once(res.pool_for(schema), schema, mailer, res.settings.jobmeter_notify_from,
                                         profiles=profiles)
        if failed:
            raise NotSent(f"{failed} notification(s) not sent")
        return sent > 0

    await poll("key notifier", one_pass, PollPolicy(idle=idle_seconds))
