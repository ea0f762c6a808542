"""The chaos run's scaling on a cluster (services/devtools/chaos/scaling.py): which consumer instances it starts, and
the invariant over the group changes it recorded."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from services.devtools.chaos.scaling import SCALED, GroupChange, consumer_processes, group_followed_scaling
from services.engine.runtime import PROJECTION_SERVICES

STEPS = [(1, 2), (2, 1)]
ALL = {("jobs", p) for p in range(6)}
LOGS = Path("logs")  # never written: no process is started


def change(before: int, after: int, members: dict[str, set[tuple[str, int]]], settled: float | None = 1.0,
           ) -> GroupChange:
    return GroupChange(SCALED, before, after, datetime.now(UTC), 10.0, settled, "Stable", members)


def test_the_group_followed_when_each_step_settled_with_as_many_members_as_instances() -> None:
    changes = [change(1, 2, {"a": {("jobs", 0), ("jobs", 1), ("jobs", 2)}, "b": {("jobs", 3), ("jobs", 4)}}),
               change(2, 1, {"a": ALL})]
    found = group_followed_scaling(changes, STEPS)
    assert found.holds and found.figures["members_after"] == [2, 1]


def test_a_skipped_step_or_a_group_that_never_settled_fails() -> None:
    scaled_in_only = [change(2, 1, {"a": ALL})]
    never_grew = [change(1, 2, {"a": ALL}, settled=None), change(2, 1, {"a": ALL})]
    never_shrank = [change(1, 2, {"a": {("jobs", 0)}, "b": {("jobs", 1)}}),
                    change(2, 1, {"a": {("jobs", 0)}, "b": {("jobs", 1)}}, settled=None)]
    for changes in (scaled_in_only, never_grew, never_shrank, []):
        assert not group_followed_scaling(changes, STEPS).holds


def test_on_a_cluster_the_scaled_consumer_starts_alone_and_dynamic_the_others_twice_and_static() -> None:
    env = {"JOBMETER_INSTANCE_ID": "from-the-parent", "PATH": "/bin"}
    processes = consumer_processes(env, "r1", LOGS, brokers=3)
    (scaled,) = [p for p in processes if p.args == [SCALED]]
    assert scaled.name == f"{SCALED}-1" and "JOBMETER_INSTANCE_ID" not in scaled.env
    others = [p for p in processes if p.args != [SCALED]]
    assert len(others) == 2 * (len(PROJECTION_SERVICES) - 1)
    assert len({p.env["JOBMETER_INSTANCE_ID"] for p in others if p.args == ["payg"]}) == 2
    assert [p.name for p in consumer_processes(env, "r1", LOGS, brokers=1)] == list(PROJECTION_SERVICES)
