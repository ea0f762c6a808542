"""BalanceDebited v2: the jobs of one account a batch debited, in one event; v1 (an event per job) upcast."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from events.codec import encode
from events.envelope import Envelope
from events.payg import MAX_DEBITED_JOBS, BalanceDebited, DebitedJob
from events.registry import REGISTRY
from projections.payg.projection import debit_events


def debited(account: str, n: int, start: int = 0) -> list[tuple[str, DebitedJob]]:
    return [(account, DebitedJob(api="extract", job_id=f"{account}-{i}", amount_minor=3)) for i in range(start, n)]


def test_a_batch_gives_an_event_per_account_holding_its_jobs_in_log_order() -> None:
    mixed = [x for pair in zip(debited("a", 3), debited("b", 3), strict=True) for x in pair]
    events = debit_events(mixed, "usd")
    assert [(e.account_id, [j.job_id for j in e.jobs], e.amount_minor) for e in events] == [
        ("a", ["a-0", "a-1", "a-2"], 9), ("b", ["b-0", "b-1", "b-2"], 9)]
    assert debit_events([], "usd") == []


def test_a_large_batch_of_one_account_is_split_and_every_job_is_in_exactly_one_event() -> None:
    events = debit_events(debited("a", 2 * MAX_DEBITED_JOBS + 1), "usd")
    assert [len(e.jobs) for e in events] == [MAX_DEBITED_JOBS, MAX_DEBITED_JOBS, 1]
    ids = [j.job_id for e in events for j in e.jobs]
    assert ids == [f"a-{i}" for i in range(2 * MAX_DEBITED_JOBS + 1)]
    assert len({e.natural_id() for e in events}) == 3


def test_the_same_debit_folded_again_has_the_same_id_and_another_set_another() -> None:
    [once] = debit_events(debited("a", 4), "usd")
    [again] = debit_events(debited("a", 4), "usd")
    [other] = debit_events(debited("a", 4, start=1), "usd")
    assert once.natural_id() == again.natural_id() != other.natural_id()


def test_a_debit_whose_amount_is_not_its_jobs_sum_is_refused() -> None:
    jobs = [DebitedJob(api="extract", job_id="j1", amount_minor=3)]
    with pytest.raises(ValidationError, match="not the sum"):
        BalanceDebited(account_id="a", amount_minor=4, currency="usd", jobs=jobs)
    with pytest.raises(ValidationError):
        BalanceDebited(account_id="a", amount_minor=0, currency="usd", jobs=[])


def test_a_v1_debit_of_one_job_reads_as_a_v2_debit_of_that_job() -> None:
    v1 = {"event_id": str(uuid.uuid4()), "type": "BalanceDebited", "version": 1,
          "occurred_at": datetime.now(UTC).isoformat(), "producer": "jobmeter-payg",
          "data": {"account_id": "acme", "api": "classify", "job_id": "j9", "amount_minor": 2, "currency": "usd"}}
    envelope, event = REGISTRY.decode(json.dumps(v1).encode())
    assert isinstance(event, BalanceDebited) and envelope.version == 1
    assert (event.account_id, event.amount_minor, event.currency) == ("acme", 2, "usd")
    assert event.jobs == [DebitedJob(api="classify", job_id="j9", amount_minor=2)]


def test_a_v2_debit_round_trips_through_the_wire() -> None:
    [event] = debit_events(debited("acme", 3), "eur")
    assert REGISTRY.decode(encode(Envelope.wrap(event, producer="jobmeter-payg")))[1] == event
