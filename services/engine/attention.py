"""What needs an operator: work that is not final past its bound, each item with the command that resolves it.

Pure: rows as read (`services.engine.doctor` gathers them), `now` and the bounds in; items out. `jobmeter doctor`
and the console's Attention page show the same list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from jobmeter.settings import Settings
from projections.meter.windows import resendable

Row = Mapping[str, Any]

# Parked work waits for an account's registration, which an operator may legitimately make hours later; a day
# without one means nobody is going to.
PARKED_BOUND = timedelta(days=1)


@dataclass(frozen=True)
class Item:
    kind: str
    subject: str  # the account, report, consumer or topic it is about
    age_seconds: float | None  # since it should have ended; None when it has no clock (a topic's replication)
    detail: str
    resolve: str  # the command that resolves it, or shows what to do

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Bounds:
    recharge: timedelta  # a recharge still `requested` this long after it was asked for
    meter: timedelta  # a report not sent this long after its window closed
    parked: timedelta = PARKED_BOUND
    webhook: timedelta = timedelta(hours=1)  # a delivery still failing this long after it was recorded
    # An alert email still unsent this long after it was recorded: the mailer retries a refused one at once, then
    # backs off while mail is out of reach, so an hour means the mail server or the address is wrong.
    mail: timedelta = timedelta(hours=1)

    @classmethod
    def of(cls, settings: Settings) -> Bounds:
        # The recharger charges at once and the reconciler asks Stripe about a recharge no webhook settled after
        # `settle_after`: twice that, and neither did. A closed window is claimed once its lateness passed; a claim
        # whose sender died is taken again after its lease: a window still unsent a further lease later is stuck.
        s = settings
        return cls(
            recharge=timedelta(seconds=2 * s.jobmeter_payg_settle_after_seconds),
            meter=timedelta(seconds=s.jobmeter_meter_lateness_seconds + 2 * s.jobmeter_meter_lease_seconds),
            # Past the first retries (seconds to a minute) and a few backed-off ones: the endpoint is down.
            webhook=timedelta(hours=1) * s.jobmeter_webhook_retry_scale,
        )


def age(since: datetime, now: datetime) -> float:
    return (now - since).total_seconds()


def unsettled_recharges(rows: Iterable[Row], now: datetime, bound: timedelta) -> list[Item]:
    """Recharges still in flight past the bound, counted from when the fold recorded them (`recorded_at`, the wall
    clock; the log time `requested_at` where a row has no other). Succeeded, failed and canceled ones are final."""
    items = []
    for r in rows:
        since: datetime = r.get("recorded_at") or r["requested_at"]
        if since > now - bound:
            continue
        sent = f"sent as {r['payment_intent_id']}" if r["payment_intent_id"] else "never sent to Stripe"
        error = f"; last error: {r['last_error']}" if r["last_error"] else ""
        items.append(Item(
            "payg-recharge-unsettled", r["account_id"], age(since, now),
            f"recharge {r['recharge_id']} of {r['amount_minor']} {r['currency']} neither paid nor failed: {sent}, "
            f"{r['attempts']} attempt(s){error}",
            f"jobmeter payg status --account {r['account_id']}",
        ))
    return items


def window_closed(r: Row) -> datetime:
    start: datetime = r["window_start"]
    return start + timedelta(seconds=r["window_seconds"])


def meter_reports(rows: Iterable[Row], now: datetime, bound: timedelta) -> list[Item]:
    items = []
    for r in rows:
        closed = window_closed(r)
        subject = f"{r['account_id']} window {r['window_start'].isoformat()} #{r['seq']}"
        resolve = f"jobmeter stripe reports --account {r['account_id']}"
        error = f"; last error: {r['last_error']}" if r["last_error"] else ""
        if r["state"] == "failed" and not resendable(r["window_start"], now):
            items.append(Item("meter-report-failed", subject, age(closed, now),
                              f"Stripe refused {r['value']} job(s) for {r['customer_id']}{error}, and the window is "
                              "now older than Stripe takes: the sender marks it expired on its next pass",
                              "jobmeter run meter"))
        elif r["state"] == "failed":
            items.append(Item("meter-report-failed", subject, age(closed, now),
                              f"Stripe refused {r['value']} job(s) for {r['customer_id']}{error}: fix the cause (the "
                              "meter, the customer), then send them again",
                              f"jobmeter stripe resend --account {r['account_id']}"))
        elif r["state"] == "expired":
            # Final for the sender, but the jobs are unbilled until someone bills them by hand and says so.
            items.append(Item("meter-report-expired", subject, age(closed, now),
                              f"{r['value']} job(s) for {r['customer_id']} are older than Stripe takes meter events "
                              f"for: bill them as an invoice item (the reason and their jobs: `jobmeter stripe expired "
                              f"--account {r['account_id']} --jobs`), then acknowledge",
                              f"jobmeter stripe acknowledge {r.get('identifier', 'IDENTIFIER')} --note 'INVOICE ITEM'"))
        elif r["state"] in ("pending", "sending") and closed <= now - bound:
            claim = "never claimed by a sender" if r["state"] == "pending" else \
                f"claimed, lease until {r['claimed_until'].isoformat() if r['claimed_until'] else '-'}"
            items.append(Item("meter-report-unsent", subject, age(closed, now),
                              f"{r['value']} job(s) for {r['customer_id']} not sent: {claim}, {r['attempts']} "
                              f"attempt(s){error} (the sender runs with `jobmeter run meter`)", resolve))
    return items


def parked_jobs(area: str, rows: Iterable[Row], now: datetime, bound: timedelta) -> list[Item]:
    """Per account, the jobs `area` (payg or meter) parked, once the oldest waited past the bound."""
    items = []
    for r in rows:
        if r["oldest"] > now - bound:
            continue
        account = r["account_id"]
        if area == "meter" and r.get("model") == "subscription":
            detail = f"{r['jobs']} job(s) of subscription account {account} wait for its Stripe customer"
            resolve = f"jobmeter subscriptions checkout --account {account}"
        else:
            detail = f"{r['jobs']} job(s) wait for account {account} to be registered"
            model = "payg" if area == "payg" else "subscription --stripe-customer CUSTOMER_ID"
            resolve = f"jobmeter accounts create {account} --model {model}"
        items.append(Item(f"{area}-parked-jobs", account, age(r["oldest"], now), detail, resolve))
    return items


def parked_topups(rows: Iterable[Row], now: datetime, bound: timedelta) -> list[Item]:
    """Top-ups waiting for their account past the bound, and every refused one (paid, credited nowhere)."""
    items = []
    for r in rows:
        account = r["account_id"]
        if r["refused_at"] is not None:
            items.append(Item(
                "payg-topup-refused", account, age(r["refused_at"], now),
                f"top-up {r['session_id']} was paid for an account not billed pay-as-you-go: refund it in Stripe",
                f"jobmeter accounts show {account}",
            ))
        elif r["parked_since"] is not None and r["parked_since"] <= now - bound:
            items.append(Item(
                "payg-topup-parked", account, age(r["parked_since"], now),
                f"top-up {r['session_id']} waits for account {account} to be registered",
                f"jobmeter accounts create {account} --model payg",
            ))
    return items


def webhook_deliveries(rows: Iterable[Row], now: datetime, bound: timedelta) -> list[Item]:
    """Deliveries given up on, and those still failing past the bound (the endpoint has been down that long)."""
    items = []
    for r in rows:
        last = f"last {'HTTP ' + str(r['last_status']) if r['last_status'] else r['last_error'] or 'no answer'}"
        where = f"{r['type']} delivery {r['delivery_id']} to {r['url']}"
        resolve = f"jobmeter webhooks deliveries {r['account_id']}"
        if r["state"] == "failed":
            items.append(Item("webhook-delivery-failed", r["account_id"], age(r["created_at"], now),
                              f"{where} given up after {r['attempts']} attempt(s), {last}: the customer missed it",
                              resolve))
        elif r["created_at"] <= now - bound:
            due = r["next_attempt_at"].isoformat() if r["next_attempt_at"] else "-"
            items.append(Item("webhook-delivery-failing", r["account_id"], age(r["created_at"], now),
                              f"{where} still failing after {r['attempts']} attempt(s), {last}; next attempt {due}",
                              resolve))
    return items


def alert_mails(rows: Iterable[Row], now: datetime, bound: timedelta) -> list[Item]:
    """Alert emails still unsent past the bound: the customer has not been told. The mailer keeps retrying; what
    resolves it is mail reaching its server (JOBMETER_SMTP_URL), or a contact address that takes it."""
    items = []
    for r in rows:
        if r["created_at"] > now - bound:
            continue
        to = r["contact_email"] or "the billing inbox (no contact on file)"
        tried = (f"failing after {r['attempts']} attempt(s), last error: {r['last_error'] or '-'}" if r["attempts"]
                 else "never tried (is `jobmeter run webhooks` or `run all` running?)")
        items.append(Item(
            "alert-mail-unsent", r["account_id"], age(r["created_at"], now),
            f"{r['type']} alert mail {r['event_id']} to {to} not sent: {tried}; check JOBMETER_SMTP_URL, or set "
            f"another address with `jobmeter accounts contact {r['account_id']} --email ADDRESS`",
            f"jobmeter webhooks mails {r['account_id']}",
        ))
    return items


@dataclass(frozen=True)
class LetterCount:
    consumer: str  # "" for records on the dead-letter topic that are no dead letter
    count: int
    newest_at: datetime
    newest_reason: str


def dead_letters(counts: Iterable[LetterCount], now: datetime) -> list[Item]:
    """Every consumer with dead letters: none is final until someone looked (there is no bound to wait for)."""
    return [
        Item("dead-letters", c.consumer or "(unreadable)", age(c.newest_at, now),
             f"{c.count} dead letter(s); newest: {c.newest_reason}",
             f"jobmeter deadletters list --consumer {c.consumer}" if c.consumer else "jobmeter deadletters list")
        for c in sorted(counts, key=lambda c: c.consumer)
    ]


def under_replicated(below: Mapping[str, int], factor: int, bootstrap_servers: str) -> list[Item]:
    return [
        Item("topic-under-replicated", topic, None,
             f"{copies} cop{'y' if copies == 1 else 'ies'} of each partition, below the replication factor {factor}",
             f"kafka-reassign-partitions.sh --bootstrap-server {bootstrap_servers} "
             "--reassignment-json-file PLAN.json --execute")
        for topic, copies in sorted(below.items())
    ]


def describe_age(seconds: float | None) -> str:
    """An age for people: the two largest units (3d 4h, 5m 12s)."""
    if seconds is None:
        return "-"
    left = max(0, int(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2])
