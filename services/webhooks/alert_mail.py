"""Alert emails: the mailer worker beside the `webhooks` consumer, and what each alert says (mail goes out through
`services.platform.mail`).

The fold writes one `alert_mails` row per alert event in the transaction that folds it (`projections/webhooks`), so
an alert is mailed once whoever folds it and however often. This worker leases rows in a short transaction, sends
them with none open, and marks each in a transaction of its own (as `services.keys.notify` does): a crash between
the send and the mark sends that one again once its lease has run out, with the same Message-ID, so a mail system
can drop the copy. The address is the account's contact as the fold knows it when the mail is sent; without one,
the billing inbox (`JOBMETER_NOTIFY_FROM`) gets it, so a person can pass it on. A spend cap's amounts are in the
currency its account's jobs are priced in: the Stripe catalog's for a subscription account (its overage), the PAYG
currency (`JOBMETER_PAYG_CURRENCY`) for any other, the billing model read from the account registry.
"""

from __future__ import annotations

import json
import smtplib
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import asyncpg
import structlog

from events.envelope import utcnow
from projections.db import transaction
from projections.webhooks import store
from services.accounts.profiles import Profiles, profiles_of
from services.platform.mail import Mailer, mailer_for
from services.platform.poll import PollPolicy, poll
from services.platform.resources import Resources
from services.stripe_adapter.catalog import CURRENCY as CATALOG_CURRENCY

log = structlog.get_logger(__name__)

LEASE = timedelta(minutes=2)  # far longer than a send takes (SMTP's own timeout is 20 s): it runs out for the dead


def spend_currency(model: str | None, payg_currency: str) -> str:
    """The currency an account's spend caps count in: a subscription's overage is priced in the Stripe catalog's
    currency; any other account's jobs at the PAYG prices, in the PAYG currency."""
    return CATALOG_CURRENCY if model == "subscription" else payg_currency


def _day(value: Any) -> str:
    return str(value)[:10]


def _money(minor: int, currency: str) -> str:
    sign, minor = ("-" if minor < 0 else ""), abs(minor)  # a PAYG balance may be below zero (its allowance)
    return f"{sign}{minor // 100}.{minor % 100:02d} {currency.upper()}"  # two-decimal currencies, as PAYG notices


def limit_text(data: dict[str, Any], currency: str) -> str:
    """The limit an alert is about, as a customer reads it."""
    on = f" on {data['api']}" if data.get("api") else ""
    if data["limit_kind"] == "included":
        return f"the {data['limit']} jobs{on} your plan includes"
    if data["limit_kind"] == "spend_cap":
        return f"your spend cap of {_money(data['limit'], currency)}{on}"
    return f"your cap of {data['limit']} jobs{on}"


def _used(data: dict[str, Any], currency: str) -> str:
    return _money(data["used"], currency) if data["limit_kind"] == "spend_cap" else f"{data['used']} jobs"


def text_of(kind: str, account: str, data: dict[str, Any], currency: str) -> tuple[str, str]:
    """(subject, body) of an alert. Pure."""
    period = (f"this billing period ({_day(data['period_start'])} to {_day(data['period_end'])}, UTC)"
              if "period_start" in data else "")
    if kind == "usage.threshold_crossed":
        limit = limit_text(data, currency)
        return (f"Account {account}: {data['threshold_percent']} % used of {limit}",
                f"Account {account} has used {_used(data, currency)} {period}: {data['threshold_percent']} % of "
                f"{limit}.\n")
    if kind == "usage.cap_reached":
        limit = limit_text(data, currency)
        then = ("Its API keys answer 429 until the period ends or the cap is raised; jobs already completed are "
                "billed as usual." if data["hard"] else "The cap is soft: the API keys keep working.")
        return (f"Account {account}: {limit} reached",
                f"Account {account} has reached {limit} {period} ({_used(data, currency)}).\n\n{then}\n")
    if kind == "balance.low" and "balance_minor" in data:
        balance, threshold = (_money(data[f], data["currency"]) for f in ("balance_minor", "threshold_minor"))
        return (f"Account {account}: prepaid balance low",
                f"The prepaid balance of account {account} is {balance}, below its threshold of {threshold}.\n\n"
                "Unless it recharges automatically, top it up before it runs out: its API keys stop when it is "
                "exhausted.\n")
    if kind == "balance.low":  # recorded before BalanceLow, when this type was the recharge requested
        amount = _money(data["amount_minor"], data["currency"])
        return (f"Account {account}: prepaid balance low",
                f"The prepaid balance of account {account} fell below its threshold; an automatic top-up of "
                f"{amount} was requested.\n")
    if kind == "usage.forecast_exceeded" and data["limit_kind"] == "spend_cap":
        money = data.get("currency") or currency  # the forecast names the currency it priced the jobs in
        limit = limit_text(data, money)
        return (f"Account {account}: forecast to exceed {limit}",
                f"At its pace so far, account {account} is forecast to spend about "
                f"{_money(data['forecast_spend'], money)} {period}, past {limit}. It has spent "
                f"{_money(data['spend_to_date'], money)} so far ({data['jobs_to_date']} jobs).\n")
    if kind == "usage.forecast_exceeded":
        limit = limit_text(data, "")
        when = f", around {data['reached_on']}" if data.get("reached_on") else ""
        return (f"Account {account}: forecast to exceed {limit}",
                f"At its pace so far, account {account} is forecast to run about {data['forecast_jobs']} jobs "
                f"{period} (up to {data['forecast_high']}), past {limit}{when}. It has run {data['jobs_to_date']} "
                f"so far.\n")
    raise ValueError(f"{kind!r} is not an alert that is emailed")


def compose(row: asyncpg.Record | dict[str, Any], sender: str, currency: str) -> EmailMessage:
    """The mail of one leased row: to the account's contact, else the billing inbox. Pure."""
    data = json.loads(row["data"]) if isinstance(row["data"], str) else row["data"]
    subject, body = text_of(row["type"], row["account_id"], data, currency)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row["contact_email"] or sender
    message["Subject"] = subject
    message["Message-ID"] = f"<alert-{row['event_id']}@jobmeter>"  # the alert's id: a copy is recognisable
    message.set_content(body + f"\nSent by jobmeter (alert {row['event_id']}).\n")
    return message


class NotSent(OSError):
    """Some alert mails of a pass could not be sent (mail out of reach): the mailer backs off and retries them."""


async def mail_alerts_once(
    pool: asyncpg.Pool, schema: str, mailer: Mailer, sender: str, currency: str, *, limit: int = 20,
    lease: timedelta = LEASE, now: datetime | None = None, profiles: Profiles | None = None,
) -> tuple[int, int]:
    """Send up to `limit` unsent alert mails, oldest first; returns how many were sent and how many failed.
    `currency`: the PAYG currency; `profiles` says which accounts are billed by subscription (without it, none)."""
    sent = failed = 0
    async with transaction(pool, schema) as conn:
        claimed = await store.claim_alert_mails(conn, limit, now or utcnow(), lease)
    known = await profiles([r["account_id"] for r in claimed]) if profiles is not None and claimed else {}
    for row in claimed:
        profile = known.get(row["account_id"])
        message = compose(row, sender, spend_currency(profile.model if profile else None, currency))
        try:
            await mailer.send(message)
        except (OSError, smtplib.SMTPException) as error:
            log.warning("alert mail not sent, will retry", event_id=str(row["event_id"]), error=str(error))
            async with transaction(pool, schema) as conn:
                await store.alert_mail_failed(conn, row["event_id"], str(error))
            failed += 1
            continue
        async with transaction(pool, schema) as conn:
            await store.alert_mail_sent(conn, row["event_id"], str(message["To"]))
        sent += 1
    return sent, failed


async def run_alert_mailer(res: Resources, schema: str) -> None:
    """Send alert mails until cancelled; back off while mail or Postgres is unreachable."""
    mailer, profiles = mailer_for(res.settings), profiles_of(res)
    s = res.settings

    async def one_pass() -> bool:
        sent, failed = await mail_alerts_once(res.pool_for(schema), schema, mailer, s.jobmeter_notify_from,
                                              s.jobmeter_payg_currency, profiles=profiles)
        if failed:
            raise NotSent(f"{failed} alert mail(s) not sent")
        return sent > 0

    await poll("alert mailer", one_pass, PollPolicy(idle=s.jobmeter_webhook_poll_seconds))
