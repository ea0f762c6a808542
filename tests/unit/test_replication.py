"""The replication jobmeter asks for: three copies unless the cluster has fewer brokers or the operator says
otherwise, and two copies in sync before `acks=all` succeeds once there are three."""

from __future__ import annotations

import pytest

from events.topics import Replication, TopicsReport, replication_for


@pytest.mark.parametrize(("brokers", "factor", "isr", "expected"), [
    (1, None, None, Replication(1, 1)),
    (2, None, None, Replication(2, 1)),
    (3, None, None, Replication(3, 2)),
    (5, None, None, Replication(3, 2)),
    (5, 5, None, Replication(5, 2)),
    (5, 5, 3, Replication(5, 3)),
    (1, 3, None, Replication(3, 2)),  # asked for: Kafka refuses to create it, and says why
    (3, 1, None, Replication(1, 1)),
])
def test_the_replication_asked_for(brokers: int, factor: int | None, isr: int | None, expected: Replication) -> None:
    assert replication_for(brokers, factor, isr) == expected


def test_more_in_sync_replicas_than_copies_is_refused() -> None:
    with pytest.raises(ValueError, match="no write could succeed"):
        replication_for(3, 2, 3)


def test_each_under_replicated_topic_is_named_with_its_copies() -> None:
    report = TopicsReport(Replication(3, 2), below_factor={"payg.events": 2, "jobs.completed": 1})
    assert report.warnings() == [
        "topic jobs.completed has 1 copy of each partition, below the replication factor 3: a broker's disk is all "
        "that holds it",
        "topic payg.events has 2 copies of each partition, below the replication factor 3: a broker's disk is all "
        "that holds it",
    ]
