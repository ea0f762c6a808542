"""Orchestration: start or reuse each service, wait for real health, report status, write stack.env."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import shutil
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from events.topics import replication_for
from jobmeter.settings import state_dir
from services.devtools.stack.kafka import Kafka
from services.devtools.stack.postgres import Postgres
from services.devtools.stack.processes import ServiceStatus, StackError, file_lock, read_int, write_atomic
from services.devtools.stack.server import Server
from services.devtools.stack.stripe_mock import StripeMock

T = TypeVar("T")
EXTERNAL_TIMEOUT = 15.0
PROBE_TIMEOUT = 10.0
EXITED_AFTER_MISSES = 3


def console() -> Console:
    # Rich assumes 80 columns off a terminal (CI logs, pipes), which would fold the addresses.
    return Console(width=None if sys.stdout.isatty() else 160)


MAX_BROKERS = 9


def brokers_file() -> Path:
    return state_dir() / "run" / "kafka.brokers"


def saved_brokers() -> int | None:
    """How many Kafka nodes this stack was last started with; None before the first `up`."""
    return read_int(brokers_file())


def services(brokers: int | None = None) -> dict[str, Server]:
    """The stack's servers: its Kafka nodes (as many as it was started with, unless `brokers` says), Postgres and
    stripe-mock."""
    nodes = brokers or saved_brokers() or 1
    kafka = Kafka(1, nodes).peers()
    return {svc.name: svc for svc in (*kafka, Postgres(), StripeMock())}


def _every_kafka_node() -> list[Kafka]:
    """Nodes of either layout (the single broker and a cluster keep apart folders): what `down` must stop."""
    sizes = {1, saved_brokers() or 1}
    return [node for size in sorted(sizes) for node in Kafka(1, size).peers()]


def get(name: str) -> Server:
    found = services().get(name.replace("_", "-").lower())
    if found is None:
        raise StackError(f"unknown service {name!r}; one of: {', '.join(services())}")
    return found


def env_file() -> Path:
    return state_dir() / "stack.env"


def read_env_file() -> dict[str, str]:
    try:
        lines = env_file().read_text().splitlines()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def _write_env_file(values: dict[str, str]) -> None:
    body = "".join(f"{key}={value}\n" for key, value in values.items())
    write_atomic(env_file(), "# Written by `jobmeter stack up`; real environment variables win.\n" + body)


def external(svc: Server) -> str | None:
    """The address from a real environment variable, when it points at a server we did not start."""
    value = os.environ.get(svc.env_key)
    # `eval "$(jobmeter stack env)"` exports our own addresses: those still mean "ours", not external.
    if not value or value == svc.env_value():
        return None
    return value


def _choose_brokers(brokers: int | None) -> int:
    """The cluster size `up` runs: the one asked for, else the one the stack has, else a single broker. Another
    size than the running one is refused: the quorum's voters are written into each node's storage."""
    current = saved_brokers() or 1
    wanted = brokers or current
    if not 1 <= wanted <= MAX_BROKERS:
        raise StackError(f"--brokers takes 1 to {MAX_BROKERS}, not {wanted}")
    running = [node.name for node in Kafka(1, current).peers() if node.alive()]
    if wanted != current and running:
        raise StackError(
            f"this stack runs {current} Kafka broker{'s' * (current > 1)} ({', '.join(running)}); stop it with "
            f"`jobmeter stack down` before starting {wanted} (each size keeps its own data)"
        )
    return wanted


def _stack_values(svcs: list[Server], ext: dict[str, str | None], brokers: int) -> dict[str, str]:
    values = {svc.env_key: ext[svc.name] or str(svc.env_value()) for svc in svcs}
    if brokers > 1 and not any(ext[svc.name] for svc in svcs if isinstance(svc, Kafka)):
        # Clients create topics by these: every copy the cluster can hold, and acks=all meaning two of them.
        replication = replication_for(brokers)
        values["JOBMETER_REPLICATION_FACTOR"] = str(replication.factor)
        values["JOBMETER_MIN_INSYNC_REPLICAS"] = str(replication.min_insync)
    if not any(ext.values()):
        # Servers we started on this machine, holding nothing of value: the published development secrets
        # are fine here. Never said when a server is external: that may be a real deployment's.
        values["JOBMETER_ENV"] = "development"
    return values


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, even when the caller sits inside a running loop (async tests)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _probe(svc: Server, address: str | None) -> str | None:
    """None when healthy, else why not."""
    if not address:
        return "no address yet"
    try:
        await asyncio.wait_for(svc.check(address), PROBE_TIMEOUT)
    except Exception as exc:  # any failure of a real client means "not healthy yet"
        return f"{type(exc).__name__}: {exc}".strip()
    return None


async def _wait_healthy(svc: Server, address: str, own: bool) -> None:
    timeout = svc.health_timeout if own else EXTERNAL_TIMEOUT
    deadline = asyncio.get_running_loop().time() + timeout
    missed = 0  # checks in a row that found no process: one miss alone once declared a starting Kafka dead
    while (error := await _probe(svc, address)) is not None:
        if own and not svc.alive():
            missed += 1
            if missed == EXITED_AFTER_MISSES:
                raise StackError(f"{svc.name} exited while starting ({error}); read {svc.log_hint()}")
        else:
            missed = 0
        if asyncio.get_running_loop().time() > deadline:
            where = f"read {svc.log_hint()}" if own else f"check {svc.env_key} in your environment"
            raise StackError(f"{svc.name} at {address} not healthy after {timeout:.0f}s ({error}); {where}")
        await asyncio.sleep(0.5)


def up(quiet: bool = False, brokers: int | None = None) -> dict[str, str]:
    out = None if quiet else console()
    with file_lock(state_dir() / "run" / "stack.lock"):
        size = _choose_brokers(brokers)
        write_atomic(brokers_file(), f"{size}\n")
        svcs = list(services(size).values())
        ext = {svc.name: external(svc) for svc in svcs}
        own = [svc for svc in svcs if ext[svc.name] is None]
        for svc in own:
            svc.install(out)

        async def reuse() -> list[str | None]:
            return list(await asyncio.gather(*(_probe(svc, svc.address()) for svc in own)))

        # Reuse what lives and answers; a live but silent server may still be starting, so it gets waited on.
        healthy = {svc.name for svc, error in zip(own, run_sync(reuse()), strict=True) if error is None}
        for svc in own:
            if svc.name not in healthy and not svc.alive():
                svc.launch()

        async def settle() -> None:
            waits = [_wait_healthy(svc, str(svc.address()), True) for svc in own if svc.name not in healthy]
            waits += [_wait_healthy(svc, url, False) for svc in svcs if (url := ext[svc.name])]
            await asyncio.gather(*waits)

        run_sync(settle())
        values = _stack_values(svcs, ext, size)
        _write_env_file(values)
    if out:
        rows = [_row(svc, "external" if ext[svc.name] else "running", ext[svc.name] or svc.address()) for svc in svcs]
        out.print(table(rows))
        out.print(f'Connection file: {env_file()}  (shell: eval "$(jobmeter stack env)")')
    return values


def _row(svc: Server, state: str, address: str | None) -> ServiceStatus:
    pid = svc.pid() if state in ("running", "unhealthy") else None
    return ServiceStatus(svc.name, state, address or "-", pid, svc.log_hint(), svc.role)


def status() -> list[ServiceStatus]:
    svcs = list(services().values())

    async def probe_all() -> list[str | None]:
        return list(await asyncio.gather(*(_probe(svc, external(svc) or svc.address()) for svc in svcs)))

    rows = []
    for svc, error in zip(svcs, run_sync(probe_all()), strict=True):
        url = external(svc)
        if url:
            state = "external" if error is None else "unreachable"
        elif svc.address() is None:
            state = "not started"
        elif not svc.alive():
            state = "down"
        else:
            state = "running" if error is None else "unhealthy"
        rows.append(_row(svc, state, url or svc.address()))
    return rows


def table(rows: list[ServiceStatus]) -> Table:
    out = Table(title="jobmeter stack")
    for column in ("service", "role", "state", "address", "pid"):
        # Fold rather than cut with an ellipsis: a cut address is useless to copy.
        out.add_column(column, overflow="fold")
    for row in rows:
        colour = "green" if row.ok else "red"
        out.add_row(row.name, row.role, f"[{colour}]{row.state}[/{colour}]", row.address, str(row.pid or "-"))
    return out


def status_json(rows: list[ServiceStatus]) -> dict[str, Any]:
    """`jobmeter stack status --json`: every server with its role, state, address, pid and log."""
    return {"ok": all(row.ok for row in rows), "brokers": saved_brokers() or 1, "env_file": str(env_file()),
            "servers": [dataclasses.asdict(row) for row in rows]}


def down(purge: bool = False) -> None:
    with file_lock(state_dir() / "run" / "stack.lock"):
        for svc in (StripeMock(), Postgres()):
            if external(svc) is None:
                svc.stop()
        nodes = [node for node in _every_kafka_node() if external(node) is None]
        # All at once: stopped one by one, the last node would wait out its timeout for a quorum (a majority of
        # the voters) that its peers took away, before it could leave in order.
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            list(pool.map(lambda node: node.stop(), nodes))
        if purge:
            root = state_dir()
            for folder in ("data", "logs", "run", "kafka", *(p.name for p in root.glob("kafka-[0-9]*"))):
                shutil.rmtree(root / folder, ignore_errors=True)
            env_file().unlink(missing_ok=True)


def restart(name: str) -> str:
    svc = get(name)
    if external(svc):
        raise StackError(f"{svc.name} comes from {svc.env_key} in the environment; it is not ours to restart")
    with file_lock(state_dir() / "run" / "stack.lock"):
        svc.stop()
        svc.launch()
        address = str(svc.address())
        run_sync(_wait_healthy(svc, address, True))
        # The port stays unless something else took it meanwhile; keep the connection file true either way.
        value = str(svc.env_value())
        if read_env_file().get(svc.env_key) not in (None, value):
            _write_env_file({**read_env_file(), svc.env_key: value})
    return address


def kill(name: str) -> None:
    # No lock: fault injection must be able to crash a server at any moment, even mid-`up`.
    get(name).kill()
