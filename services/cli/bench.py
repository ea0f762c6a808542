"""`jobmeter bench`: throughput of ingest and of the ledger fold, key-check latency and Stripe request counts, each
beside what it is compared with."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.table import Table

from jobmeter.logs import configure_logging
from jobmeter.settings import get_settings
from services.cli.common import console, errors
from services.devtools.bench import keycheck, stripe_requests
from services.devtools.bench.bad_input import bench_bad_input
from services.devtools.bench.engine import bench_engine
from services.devtools.bench.engine_figures import (
    DEFAULT_STEPS,
    EngineRun,
    StepResult,
    figure,
    parse_modes,
    parse_steps,
)
from services.devtools.bench.engine_figures import as_json as engine_json
from services.devtools.bench.engine_machine import MACHINE_ROWS
from services.devtools.bench.engine_memory import MemoryTrend
from services.devtools.bench.ingest import bench_ingest
from services.devtools.bench.ledger import bench_ledger
from services.devtools.bench.restart_cli import command as restart_command
from services.devtools.stack import StackError, up

app = typer.Typer(no_args_is_help=True)


@app.callback()
def quiet() -> None:
    """Benches print figures; the engine's INFO lines (a notification's address and body among them) would
    drown them, so only warnings are logged."""
    configure_logging("WARNING")


@app.command("ingest")
def ingest(
    events: Annotated[int, typer.Option(min=1, help="events per path")] = 100_000,
    batch: Annotated[int, typer.Option(min=1, help="jobs per HTTP request")] = 500,
    concurrency: Annotated[int, typer.Option(min=1, help="HTTP requests in flight")] = 4,
    chunk: Annotated[int, typer.Option(min=1, help="events per publish_many call (and per raw chunk)")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    profile: Annotated[bool, typer.Option(help="also profile one publisher run (cProfile, to stderr)")] = False,
    http_workers: Annotated[int, typer.Option(min=1, help="`run http --workers N`: HTTP processes on the port")] = 1,
) -> None:
    """Events/s of HTTP batch ingest, the Python publisher and a raw aiokafka producer, from one run."""
    figures = asyncio.run(
        bench_ingest(get_settings(), events, http_batch=batch, http_concurrency=concurrency, chunk=chunk,
                     profile=profile, http_workers=http_workers)
    )
    if figures.profile:
        errors.print(figures.profile, markup=False, highlight=False)
    if as_json:
        print(json.dumps({"events": events, **figures.as_json()}, indent=2))
        return
    table = Table(title=f"ingest: {events:,} events per path")
    for column in ("path", "events/s", "seconds", "how"):
        table.add_column(column, justify="right" if column in ("events/s", "seconds") else "left")
    for name, rate, how in (
        ("HTTP batch ingest", figures.http,
         f"`run http` child, {http_workers} process(es), {batch} jobs a request, {concurrency} in flight"),
        ("Python publisher", figures.publisher, f"Publisher.publish_many, {chunk} a call"),
        ("raw aiokafka", figures.raw, f"pre-encoded bytes, same producer settings, a batch per partition, "
                                      f"{chunk} a chunk"),
    ):
        table.add_row(name, f"{rate.per_second:,.0f}", f"{rate.seconds:.2f}", how)
    console.print(table)
    for name, ratio in (("publisher", figures.publisher_over_raw), ("HTTP ingest", figures.http_over_raw)):
        verdict = "[green]within 2x[/green]" if ratio >= 0.5 else "[red]more than 2x slower[/red]"
        console.print(f"{name} / raw: [bold]{ratio:.2f}[/bold] ({verdict})")


@app.command("ledger")
def ledger(
    events: Annotated[int, typer.Option(min=1, help="events for the full, raw and naive runs")] = 100_000,
    naive_events: Annotated[int, typer.Option(min=1, help="events the naive run measures (then extrapolates)")] = 5000,
    replay_events: Annotated[int, typer.Option(min=1, help="events replayed for the replay figure")] = 1_000_000,
) -> None:
    """JSON: the ledger fold against a raw COPY pipe and a one-insert-per-event fold; peak RSS; replay time."""
    figures = asyncio.run(
        bench_ledger(get_settings(), events, naive_events=naive_events, replay_events=replay_events)
    )
    print(json.dumps(figures.as_json(), indent=2))


@app.command("bad-input")
def bad_input(
    good: Annotated[int, typer.Option(min=1, help="good items per run")] = 50_000,
    batch: Annotated[int, typer.Option(min=1, help="good items per HTTP request")] = 500,
    concurrency: Annotated[int, typer.Option(min=1, help="HTTP requests in flight")] = 4,
    bad_ratio: Annotated[float, typer.Option(min=0.0, max=0.9, help="share of all items that are bad")] = 0.1,
    rounds: Annotated[int, typer.Option(min=1, help="clean/dirty pairs, alternated")] = 2,
) -> None:
    """JSON: good items/s through the HTTP app with clean batches and with `bad_ratio` bad items mixed in, and
    their ratio (target >= 0.8)."""
    figures = asyncio.run(bench_bad_input(get_settings(), good, batch=batch, concurrency=concurrency,
                                          bad_ratio=bad_ratio, rounds=rounds))
    print(json.dumps({"good_items": good, "rounds": rounds, **figures.as_json()}, indent=2))


@app.command("engine")
def engine(
    steps: Annotated[str, typer.Option(help="offered jobs/s per step, comma-separated")] = ",".join(
        str(s) for s in DEFAULT_STEPS),
    seconds: Annotated[float, typer.Option(min=1, help="seconds per step")] = 60,
    mode: Annotated[str, typer.Option(
        help="all (`run all`), one-process (`run all --one-process`), split (`run http` and `run NAME` each "
             "started apart), comma-separated, or both (all,split)")] = "both",
    batch: Annotated[int, typer.Option(min=1, help="jobs per HTTP request at most")] = 500,
    in_flight: Annotated[int, typer.Option(min=1, help="HTTP requests in flight at most")] = 8,
    drain: Annotated[float, typer.Option(min=1, help="seconds a step's backlog may take to drain")] = 120,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    brokers: Annotated[int | None, typer.Option(
        min=1, max=9, help="Kafka nodes: start (or reuse) a stack of that many first, as `stack up --brokers N` "
        "does; from 2 up, on a stack of its own (JOBMETER_STATE_DIR), as for `chaos --brokers`")] = None,
    max_lag: Annotated[int | None, typer.Option(
        min=0, help="the engine's JOBMETER_INGEST_MAX_LAG (admission: ingest answers 503 while a consumer has more "
        "than this many jobs left to fold, about: its records × ingest's jobs per record; 0 = off); unset: as "
        "configured")] = None,
) -> None:
    """The whole engine under a steady load through HTTP ingest, in steps: achieved rate, each consumer's lag (in
    records, and about as many jobs at the step's jobs per record), 202 → ledger / meter outbox / PAYG balance
    latency, CPU and peak RSS per process."""
    try:
        rates, modes = parse_steps(steps), parse_modes(mode)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if brokers is not None:
        try:
            up(quiet=True, brokers=brokers)
        except StackError as exc:
            errors.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        get_settings.cache_clear()  # the stack's connection file now names the cluster

    def say(line: str) -> None:
        errors.print(line, markup=False, highlight=False)

    base = get_settings()
    if max_lag is not None:
        base = base.model_copy(update={"jobmeter_ingest_max_lag": max_lag})
    runs = [asyncio.run(bench_engine(base, m, rates, seconds, batch=batch, in_flight=in_flight,
                                     drain_seconds=drain, log=say)) for m in modes]
    if as_json:
        print(engine_json(runs, seconds, brokers=brokers or 1))
        return
    for run in runs:
        _engine_tables(run, seconds, brokers or 1)


def _engine_tables(run: EngineRun, seconds: float, brokers: int) -> None:
    def ms(value: float | None) -> str:
        return "—" if value is None else f"{value * 1000:,.0f}"

    on = f", {brokers} Kafka brokers" if brokers > 1 else ""
    table = Table(title=f"engine, {run.mode}{on}: {seconds:g} s a step; figure {figure(run.steps) or 0:,} jobs/s")
    for column in ("offered/s", "achieved/s", "keeps up", "jobs/record", "most behind: records ≈ jobs (consumer)",
                   "ledger p50/p99 ms", "meter p50/p99 ms", "payg p50/p99 ms"):
        table.add_column(column, justify="right")
    for step in run.steps:
        cells = [f"{ms(lat.as_json()['p50_s'])} / {ms(lat.as_json()['p99_s'])}" for lat in step.latency.values()]
        refused = f" ({step.refused:,} × 503)" if step.refused else ""
        per = step.jobs_per_record
        table.add_row(f"{step.offered:,}", f"{step.achieved:,.0f}{refused}", "yes" if step.keeps_up else "no",
                      "—" if per is None else f"{per:,.1f}", _most_behind(step), *cells)
    console.print(table)
    cores = next((s.machine.cpus for s in run.steps if s.machine is not None), 0)
    usage = Table(title=f"engine, {run.mode}: CPU % of one core (the machine: {cores} cores, {100 * cores} %) / "
                        "peak RSS MB (stack/: PSS), per process and step (jobs/s)")
    usage.add_column("process")
    for step in run.steps:
        usage.add_column(f"{step.offered:,}", justify="right")
    for name in (run.steps[0].processes if run.steps else {}):
        usage.add_row(name, *(f"{s.processes[name].cpu_percent:.0f} / {s.processes[name].peak_rss_mb:.0f}"
                              if name in s.processes else "—" for s in run.steps))
    for key, label in MACHINE_ROWS:
        usage.add_row(label, *("—" if s.machine is None else s.machine.cell(key) for s in run.steps))
    console.print(usage)
    memory = Table(title=f"engine, {run.mode}: RSS MB at the steady part's start → end (growth MB/min; MB per "
                         "million jobs), per process and step (jobs/s)")
    memory.add_column("process")
    for step in run.steps:
        memory.add_column(f"{step.offered:,}", justify="right")
    for name in (run.steps[0].memory if run.steps else {}):
        memory.add_row(name, *(_growth(s.memory[name]) if name in s.memory else "—" for s in run.steps))
    console.print(memory)


def _most_behind(step: StepResult) -> str:
    if (worst := step.most_behind) is None:
        return "—"
    consumer, records = worst
    jobs = step.about_jobs(records)
    return f"{records:,} ≈ {'—' if jobs is None else f'{jobs:,}'} ({consumer})"


def _growth(trend: MemoryTrend) -> str:
    per_million = "—" if trend.per_million_jobs_mb is None else f"{trend.per_million_jobs_mb:+.1f}"
    return f"{trend.start_mb:.0f} → {trend.end_mb:.0f} ({trend.per_minute_mb:+.2f}; {per_million})"


app.command("keys")(keycheck.keys)
app.command("stripe")(stripe_requests.command)
app.command("restart")(restart_command)
