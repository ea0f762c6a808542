"""What the dunning policy remembers of each invoice: a small join-semilattice, so arrival order cannot matter.

Stripe moves an invoice forward only: open → (retried failures) → no further attempt → uncollectible, and from
any of those to paid or void, both final. Each event is read as "the invoice got at least this far", and two
facts about one invoice join to the further of the two (`RANK`): a late copy of an earlier step changes nothing,
and any order of one set of events ends in the same fact. Pure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

InvoiceStatus = Literal["retrying", "failed", "uncollectible", "voided", "paid"]

# How far an invoice got. Paid and voided never both happen to one invoice; ranking them apart keeps the join
# deterministic even if a malformed history says both.
RANK: dict[InvoiceStatus, int] = {"retrying": 0, "failed": 1, "uncollectible": 2, "voided": 3, "paid": 4}
SETTLED: frozenset[InvoiceStatus] = frozenset({"voided", "paid"})


@dataclass(frozen=True)
class Invoice:
    id: str
    status: InvoiceStatus
    at: datetime  # the latest Stripe `created` seen for it (which invoices are forgotten first)
    since: datetime | None = None  # its earliest failure seen (a retried invoice's past-due episode)
    attempts: int = 0

    def join(self, other: Invoice) -> Invoice:
        status = max(self.status, other.status, key=RANK.__getitem__)
        failures = [t for t in (self.since, other.since) if t is not None]
        return Invoice(self.id, status, max(self.at, other.at), min(failures, default=None),
                       max(self.attempts, other.attempts))

    @property
    def settled(self) -> bool:
        return self.status in SETTLED

    def holds(self, write_off_uncollectible: bool) -> bool:
        """Whether this invoice, on its own, keeps the customer's keys suspended."""
        return self.status == "failed" or (self.status == "uncollectible" and not write_off_uncollectible)

    @property
    def reason(self) -> str:
        if self.status == "uncollectible":
            return f"invoice {self.id} marked uncollectible"
        return f"payment of invoice {self.id} failed after {self.attempts} attempt(s); Stripe will not retry"


def record(invoices: tuple[Invoice, ...], fact: Invoice, bound: int) -> tuple[Invoice, ...]:
    """`invoices` with `fact` joined in, at most `bound` of them, sorted by id (one state, one representation).

    Past the bound, settled invoices are forgotten first, oldest first: a late failure of a forgotten paid
    invoice would then suspend again (fail closed). Only when more than `bound` invoices are unsettled at once is
    the oldest of those forgotten, and it no longer holds keys suspended; the others still do.
    """
    by_id = {i.id: i for i in invoices}
    known = by_id.get(fact.id)
    by_id[fact.id] = known.join(fact) if known is not None else fact
    kept = sorted(by_id.values(), key=lambda i: (i.settled, -i.at.timestamp(), i.id))[:bound]
    return tuple(sorted(kept, key=lambda i: i.id))


def holding(invoices: tuple[Invoice, ...], write_off_uncollectible: bool) -> Invoice | None:
    """The invoice that keeps keys suspended (the oldest, if several), or None."""
    held = [i for i in invoices if i.holds(write_off_uncollectible)]
    return min(held, key=lambda i: (i.at, i.id)) if held else None


def retried_since(invoices: tuple[Invoice, ...]) -> datetime | None:
    """The earliest failure of an invoice Stripe is still retrying: when its past-due episode began."""
    return min((i.since for i in invoices if i.status == "retrying" and i.since is not None), default=None)


def encode(invoices: tuple[Invoice, ...]) -> list[dict[str, Any]]:
    return [{"id": i.id, "status": i.status, "at": i.at.isoformat(),
             "since": i.since.isoformat() if i.since else None, "attempts": i.attempts} for i in invoices]


def decode(stored: list[dict[str, Any]]) -> tuple[Invoice, ...]:
    """Tolerant of rows written by older code: a missing field takes its default; an unknown status is dropped."""
    found = []
    for item in stored:
        status = item.get("status")
        if status not in RANK or not item.get("id") or not item.get("at"):
            continue
        since = item.get("since")
        found.append(Invoice(str(item["id"]), status, datetime.fromisoformat(item["at"]),
                             datetime.fromisoformat(since) if since else None, int(item.get("attempts") or 0)))
    return tuple(sorted(found, key=lambda i: i.id))
