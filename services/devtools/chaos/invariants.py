"""The invariants a chaos run must end with, as pure checks over figures gathered afterwards."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Invariant:
    name: str
    holds: bool
    figures: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"holds": self.holds, **self.figures}


def ledger_counts_each_acknowledged_job_once(acknowledged: int, ledger_jobs: int, ledger_total: int) -> Invariant:
    """Nothing lost (every 202'd job is counted), nothing twice (the hourly sums equal the distinct jobs)."""
    return Invariant(
        "ledger_exact",
        acknowledged == ledger_jobs == ledger_total,
        {"acknowledged_jobs": acknowledged, "ledger_distinct_jobs": ledger_jobs, "ledger_total": ledger_total},
    )


def refusals_accounted(bad_sent: int, refused_4xx: int, garbage_injected: int, dead_lettered: int) -> Invariant:
    """Every bad item was answered with a 4xx, and every unparseable record on the log was dead-lettered."""
    return Invariant(
        "refusals_accounted",
        bad_sent == refused_4xx and dead_lettered == garbage_injected,
        {"bad_items_sent": bad_sent, "refused_with_4xx": refused_4xx, "garbage_on_log": garbage_injected,
         "dead_lettered": dead_lettered},
    )


def lag_recovered(seconds: float | None, bound: float, not_running: list[str] | None = None) -> Invariant:
    """After the last fault, every consumer catches up with the end of its topics within the bound, and every
    service is running at the end."""
    down = not_running or []
    return Invariant(
        "lag_recovered",
        seconds is not None and seconds <= bound and not down,
        {"seconds_to_zero_lag": None if seconds is None else round(seconds, 2), "bound_seconds": bound,
         "not_running": down},
    )


def meter_sent_equals_ledger(ledger_jobs: dict[str, int], sent: dict[str, int],
                             unsent: dict[str, dict[str, int]]) -> Invariant:
    """Per Stripe customer of a subscription account: the values of the reports Stripe took sum to the ledger's
    direct-channel jobs, and nothing is left pending, in flight, expired or refused."""
    customers = sorted(set(ledger_jobs) | set(sent) | set(unsent))
    wrong = {c: {"ledger": ledger_jobs.get(c, 0), "sent": sent.get(c, 0)} for c in customers
             if ledger_jobs.get(c, 0) != sent.get(c, 0)}
    left = {c: states for c, states in unsent.items() if any(states.values())}
    return Invariant(
        "meter_equals_ledger",
        not wrong and not left,
        {"customers": len(customers), "ledger_jobs": sum(ledger_jobs.values()), "sent_value": sum(sent.values()),
         "mismatched": dict(list(wrong.items())[:5]), "not_sent": dict(list(left.items())[:5])},
    )


def meter_identifiers_distinct(sent: list[tuple[str, str, str, int, int]]) -> Invariant:
    """No meter-event identifier was sent for two different windows, nor with two values: rows of
    (identifier, customer, window, seq, value), from the outbox and from the `MeterUsageReported` on the bus."""
    windows: dict[str, set[tuple[str, str, int, int]]] = {}
    for identifier, customer, window, seq, value in sent:
        windows.setdefault(identifier, set()).add((customer, window, seq, value))
    reused = sorted(i for i, w in windows.items() if len(w) > 1)
    return Invariant(
        "meter_identifiers_distinct",
        not reused,
        {"rows": len(sent), "identifiers": len(windows), "reused": reused[:5]},
    )


def payg_debits_equal_jobs_times_price(jobs: dict[str, dict[str, int]], prices: dict[str, int],
                                       debits: dict[str, tuple[int, int]]) -> Invariant:
    """Per PAYG account: one debit per ledger job, and their sum is Σ jobs(api) × price(api).
    `jobs`: account → api → direct jobs in the ledger; `debits`: account → (count, minor units debited)."""
    accounts = sorted(set(jobs) | set(debits))
    expected = {a: (sum(jobs.get(a, {}).values()),
                    sum(n * prices.get(api, 0) for api, n in jobs.get(a, {}).items())) for a in accounts}
    wrong = {a: {"jobs": expected[a][0], "expected_minor": expected[a][1], "debits": debits.get(a, (0, 0))[0],
                 "debited_minor": debits.get(a, (0, 0))[1]}
             for a in accounts if expected[a] != debits.get(a, (0, 0))}
    return Invariant(
        "payg_debits_equal_jobs_times_price",
        not wrong,
        {"accounts": len(accounts), "jobs": sum(e[0] for e in expected.values()),
         "expected_minor": sum(e[1] for e in expected.values()),
         "debited_minor": sum(d[1] for d in debits.values()), "mismatched": dict(list(wrong.items())[:5])},
    )


@dataclass(frozen=True)
class Recharge:
    recharge_id: str
    account_id: str
    idempotency_key: str
    payment_intent_id: str | None
    state: str
    amount_minor: int
    # Only to say why a recharge is not final: how far the recharger got with it
    attempts: int = 0
    sent_at: datetime | None = None
    claimed_until: datetime | None = None
    last_error: str | None = None


def recharges_charged_once(recharges: list[Recharge], credits: list[tuple[str, str, int]]) -> Invariant:
    """No recharge charged twice: each recharge has its own idempotency key and its own PaymentIntent, and at most
    one credit per PaymentIntent; a succeeded recharge is credited exactly once, with its amount.
    `credits`: (payment_intent_id, account_id, amount_minor) of every recharge movement."""
    keys = [r.idempotency_key for r in recharges]
    intents = [r.payment_intent_id for r in recharges if r.payment_intent_id]
    per_intent: dict[str, list[tuple[str, int]]] = {}
    for pi, account, amount in credits:
        per_intent.setdefault(pi, []).append((account, amount))
    by_intent = {r.payment_intent_id: r for r in recharges if r.payment_intent_id}
    problems: list[str] = []
    if len(set(keys)) != len(keys):
        problems.append("an idempotency key is shared by two recharges")
    if len(set(intents)) != len(intents):
        problems.append("a PaymentIntent is shared by two recharges")
    problems += [f"{pi} credited {len(c)} times" for pi, c in per_intent.items() if len(c) > 1]
    problems += [f"{pi} credited but no recharge made it" for pi in per_intent if pi not in by_intent]
    for r in recharges:
        got = per_intent.get(r.payment_intent_id or "", [])
        if r.state == "succeeded" and got != [(r.account_id, r.amount_minor)]:
            problems.append(f"{r.recharge_id} succeeded but credited {got}")
        if r.state != "succeeded" and got:
            problems.append(f"{r.recharge_id} is {r.state} but credited {got}")
    states = {s: sum(1 for r in recharges if r.state == s) for s in sorted({r.state for r in recharges})}
    return Invariant(
        "recharges_charged_once",
        not problems,
        {"recharges": len(recharges), "by_state": states, "payment_intents": len(set(intents)),
         "credits": len(credits), "credited_minor": sum(c[2] for c in credits), "problems": problems[:5]},
    )


FINAL_RECHARGE_STATES = frozenset({"succeeded", "failed", "canceled"})


def recharges_final(recharges: list[Recharge]) -> Invariant:
    """Every recharge ended (succeeded, failed or canceled), whatever Stripe answered meanwhile."""
    open_ = sorted((r for r in recharges if r.state not in FINAL_RECHARGE_STATES), key=lambda r: r.recharge_id)
    return Invariant("recharges_final", not open_, {
        "recharges": len(recharges),
        "not_final": [{"recharge_id": r.recharge_id, "attempts": r.attempts, "last_error": r.last_error,
                       "sent_at": r.sent_at and r.sent_at.isoformat(),
                       "claimed_until": r.claimed_until and r.claimed_until.isoformat()} for r in open_[:5]],
        "not_final_count": len(open_),
    })


def doctor_empty(items: list[dict[str, Any]], injected_only: set[str]) -> Invariant:
    """`jobmeter doctor` lists nothing once the run has drained, but for the dead letters the run put on the log
    on purpose: a consumer's dead-letter item is expected when every dead letter it holds is injected garbage
    (`refusals_accounted` counts those). `items`: the doctor's items as JSON."""
    expected = [i for i in items if i["kind"] == "dead-letters" and i["subject"] in injected_only]
    listed = [i for i in items if i not in expected]
    return Invariant(
        "doctor_empty",
        not listed,
        {"listed": len(listed), "items": listed[:10],
         "injected_dead_letters_of": sorted(i["subject"] for i in expected)},
    )
