"""What Stripe's meter error report (`v1.billing.meter.error_report_triggered`) says about our reports. Pure.

With the v2 stream Stripe validates meter events after it has answered 200, and reports the ones it refused in
an error report per meter and validation window: a count per error code, with a few sample events each
(`sample_errors[].request.identifier`, which carries the request's idempotency key — for our v1 requests it begins
with the event's identifier, `services.stripe_adapter.client.meter_request_key` — or the event identifier
itself). How far each code reaches decides which of our sent reports failed:
- the meter itself (`no_meter`, `archived_meter`): every event sent in the window;
- the customer (`meter_event_customer_not_found`, `meter_event_no_customer_defined`): every event of a sampled
  customer sent in the window;
- anything else (a bad value, a timestamp out of range): the sampled events only; Stripe's count beyond the
  samples is logged, as those events cannot be named.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

ERROR_REPORT = "v1.billing.meter.error_report_triggered"
METER_WIDE = frozenset({"no_meter", "archived_meter"})
CUSTOMER_WIDE = frozenset({"meter_event_customer_not_found", "meter_event_no_customer_defined"})
Scope = Literal["meter", "customer", "event"]


@dataclass(frozen=True)
class Failure:
    code: str
    scope: Scope
    count: int  # Stripe's count of events refused with this code in the window
    identifiers: frozenset[str]  # the sampled events (identifiers, as our reports hold them)
    message: str  # the first sample's message, or the code

    def detail(self, summary: str) -> str:
        return f"Stripe's meter validation refused it ({self.code}): {self.message}" + (
            f" — {summary}" if summary else "")


@dataclass(frozen=True)
class ErrorReport:
    start: datetime
    end: datetime
    failures: tuple[Failure, ...]
    summary: str


def identifier_of(sampled: str) -> str:
    """Our meter event identifier from what a sample names (the identifier, or a key that starts with it)."""
    return sampled.split(":", 1)[0]


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None


def error_report(data: dict[str, Any]) -> ErrorReport:
    """The report in a fetched event's `data`; ValueError (the record is dead-lettered) if it cannot be read."""
    start, end = _time(data.get("validation_start")), _time(data.get("validation_end"))
    if start is None or end is None or end < start:
        raise ValueError("a meter error report needs validation_start <= validation_end, as ISO times")
    reason = data.get("reason")
    kinds = reason.get("error_types") if isinstance(reason, dict) else None
    if not isinstance(kinds, list):
        raise ValueError("a meter error report needs reason.error_types")
    failures = []
    for kind in kinds:
        if not isinstance(kind, dict) or not isinstance(kind.get("code"), str):
            raise ValueError("each of reason.error_types needs a code")
        code: str = kind["code"]
        samples = [s for s in kind.get("sample_errors") or [] if isinstance(s, dict)]
        sampled = {identifier_of(r["identifier"]) for s in samples
                   if isinstance(r := s.get("request"), dict) and isinstance(r.get("identifier"), str)}
        messages = [m for s in samples if isinstance(m := s.get("error_message"), str)]
        scope: Scope = "meter" if code in METER_WIDE else "customer" if code in CUSTOMER_WIDE else "event"
        count = kind.get("error_count")
        failures.append(Failure(code, scope, count if isinstance(count, int) else len(sampled), frozenset(sampled),
                                messages[0] if messages else code))
    summary = data.get("developer_message_summary")
    return ErrorReport(start, end, tuple(failures), summary if isinstance(summary, str) else "")
