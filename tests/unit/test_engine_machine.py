"""Where the machine's CPU goes in `jobmeter bench engine`: /proc/stat read into busy, idle and steal, shared out
between the engine, the stack and what nothing measured; and a process tree's CPU counting children that exited."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.devtools.bench.engine_figures import ProcessFigures
from services.devtools.bench.engine_machine import (
    CpuTimes,
    backend_database,
    database_names,
    machine_figures,
    parse_stat,
)
from services.devtools.bench.engine_procs import cpu_seconds

# user nice system idle iowait irq softirq steal guest guest_nice
STAT = """cpu  1000 50 300 5000 100 10 40 20 70 5
cpu0 500 25 150 2500 50 5 20 10 35 3
cpu1 500 25 150 2500 50 5 20 10 35 2
intr 123 0 0
ctxt 456
"""


def test_proc_stat_is_read_into_busy_idle_and_steal_without_counting_guests_twice() -> None:
    # guest (70) and guest_nice (5) are already in user and nice: adding them would make a busy VM host busier.
    assert parse_stat(STAT) == CpuTimes(cpus=2, busy=1000 + 50 + 300 + 10 + 40, idle=5000 + 100, steal=20)


def test_an_old_kernels_short_cpu_line_reads_as_no_steal() -> None:
    assert parse_stat("cpu  10 0 5 100 1\ncpu0 10 0 5 100 1\n") == CpuTimes(cpus=1, busy=15, idle=101, steal=0)


def test_no_cpu_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="no cpu lines"):
        parse_stat("intr 1\n")


def test_the_machine_is_shared_out_between_engine_stack_and_other_over_its_capacity() -> None:
    before = CpuTimes(cpus=2, busy=1000, idle=5000, steal=10)
    # 10 s on 2 cores at 100 ticks/s = 2000 ticks: 1500 busy, 450 idle, 50 stolen.
    after = CpuTimes(cpus=2, busy=2500, idle=5450, steal=60)
    processes = {"all (itself)": 2.0, "all/ledger": 40.0, "bench (load, probes)": 18.0,
                 "stack/kafka": 45.0, "stack/postgres": 30.0, "stack/stripe-mock": 0.0}
    got = machine_figures(before, after, processes)
    assert got is not None
    assert (got.cpus, got.busy_percent, got.idle_percent, got.steal_percent) == (2, 150.0, 45.0, 5.0)
    assert got.busy_percent + got.idle_percent + got.steal_percent == 200.0
    assert (got.engine_percent, got.stack_percent) == (60.0, 75.0)
    assert got.other_percent == pytest.approx(15.0)
    assert got.as_json() == {"cpus": 2, "capacity_percent": 200, "busy_percent": 150, "idle_percent": 45,
                             "steal_percent": 5, "engine_percent": 60, "stack_percent": 75, "other_percent": 15,
                             "postgres_this_run_percent": None}
    assert (got.cell("other_percent"), got.cell("postgres_this_run_percent")) == ("15", "—")


def test_processes_that_used_more_than_the_machine_saw_show_as_a_negative_other() -> None:
    got = machine_figures(CpuTimes(1, 0, 0, 0), CpuTimes(1, 50, 50, 0), {"stack/postgres": 60.0})
    assert got is not None and got.other_percent == pytest.approx(-10.0)


def test_no_tick_between_the_readings_gives_no_figures() -> None:
    same = CpuTimes(cpus=2, busy=10, idle=10, steal=0)
    assert machine_figures(same, same, {}) is None


def test_only_the_stacks_memory_figure_says_it_is_pss() -> None:
    assert ProcessFigures(12.4, 300.2).as_json() == {"cpu_percent": 12, "peak_rss_mb": 300}
    assert ProcessFigures(12.4, 300.2, pss=True).as_json() == {"cpu_percent": 12, "peak_rss_mb": 300,
                                                               "memory": "pss"}


def test_a_trees_cpu_counts_a_child_that_ran_and_was_reaped() -> None:
    # Postgres's autovacuum workers and short backends come and go within a step: their CPU must stay counted.
    before, alone = cpu_seconds(os.getpid()), cpu_seconds(os.getpid(), tree=False)
    burn = "import time\nwhile time.process_time() < 0.3: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    assert cpu_seconds(os.getpid()) - before >= 0.25
    assert cpu_seconds(os.getpid(), tree=False) - alone < 0.25  # the bench's own figure leaves its children out


def test_a_backend_is_known_by_the_database_in_its_title_and_the_servers_own_processes_by_none() -> None:
    pad = b"\0" * 40  # Postgres pads the title it writes over its arguments
    assert backend_database(b"postgres: postgres sandbox_21f5 127.0.0.1(45882) idle" + pad) == "sandbox_21f5"
    assert backend_database(b"postgres: app jobmeter_ledger [local] idle in transaction" + pad) == "jobmeter_ledger"
    for own in (b"postgres: checkpointer", b"postgres: autovacuum worker sandbox_21f549f621",
                b"postgres: logical replication launcher", b"/usr/lib/postgresql/15/bin/postgres\0-D\0/data"):
        assert backend_database(own + pad) is None


def test_the_runs_databases_are_the_paths_of_its_urls() -> None:
    urls = ["postgresql://postgres@127.0.0.1:5432/sandbox_ab?sslmode=disable", "postgresql://u:p@h/sandbox_ab_ledger"]
    assert database_names(urls) == frozenset({"sandbox_ab", "sandbox_ab_ledger"})
