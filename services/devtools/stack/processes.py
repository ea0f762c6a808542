"""The local stack's process helpers: ports, pid files, spawning, signals, locks and logged commands."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

if TYPE_CHECKING:
    from rich.console import Console

HOST = "127.0.0.1"


class StackError(RuntimeError):
    """A service could not be installed, started or reached; the message says what to read."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # running | external | unhealthy | down | not started
    address: str
    pid: int | None
    log: str = ""
    role: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("running", "external")


def port_is_free(port: int) -> bool:
    # SO_REUSEADDR like the servers themselves, so a port in TIME_WAIT still counts as free.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_port(previous: int | None, taken: set[int] | None = None) -> int:
    """Keep the previous port when we can, so clients and stack.env stay valid across restarts."""
    taken = taken or set()
    if previous and previous not in taken and port_is_free(previous):
        return previous
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# Children we spawned in this process: polling them reaps zombies, which os.kill(pid, 0) would call alive.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int | None, marker: str) -> bool:
    """True when `pid` runs and its command line contains `marker` (a recycled pid is not our server)."""
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return _proc_state(pid) not in (None, "Z", "X") and marker in cmdline


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(stat.parent.name))
    return kids


def _wait_reaped(pids: list[int], timeout: float) -> None:
    # A zombie keeps its pid until its parent (init) reaps it, and Postgres takes the pid in a stale
    # postmaster.pid for a live server: a restart must wait for the reaping, not just the death.
    # A child of this very process is ours to reap (init never will while we live): polling it does that.
    deadline = time.monotonic() + timeout
    while True:
        for pid in pids:
            if (child := _CHILDREN.get(pid)) is not None and child.poll() is not None:
                del _CHILDREN[pid]
        if all(_proc_state(pid) is None for pid in pids) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def spawn(cmd: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> int:
    """Start a server detached from our session so it outlives this process and Ctrl-C."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def _signal(pid: int, sig: signal.Signals) -> None:
    # Servers lead their own process group (start_new_session / pg_ctl's setsid), so helpers die with them.
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def wait_gone(pid: int, marker: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid, marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    _wait_reaped([pid], 5.0)
    return True


def terminate(pid: int | None, marker: str, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL when the server has not exited after `timeout` seconds."""
    if not pid_alive(pid, marker):
        return
    assert pid is not None
    _signal(pid, signal.SIGTERM)
    if not wait_gone(pid, marker, timeout):
        hard_kill(pid, marker)


def hard_kill(pid: int | None, marker: str) -> None:
    """A crash: SIGKILL the server and its children (Postgres backends sit in sessions of their own)."""
    if not pid_alive(pid, marker):
        return
    assert pid is not None
    kids = _children(pid)
    _signal(pid, signal.SIGKILL)
    for kid in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(kid, signal.SIGKILL)
    wait_gone(pid, marker, 10.0)
    _wait_reaped(kids, 5.0)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise work on shared folders: two `up`s at once, or two clones filling the same cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# Lines that mean one more file fetched or placed: Maven, go, apt-get.
PROGRESS_WORDS = ("Downloaded from", "Copying ", "go: downloading", "Get:", "Unpacking ")


def run_logged(
    cmd: list[str],
    log: Path,
    console: Console | None,
    label: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Run an installer, streaming its lines into a spinner (downloads can take minutes) and into `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with contextlib.ExitStack() as stack, log.open("w") as out:
        spinner = stack.enter_context(console.status(label)) if console else None
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if any(word in line for word in PROGRESS_WORDS):
                count += 1
            if spinner is not None and console is not None:
                room = max(20, console.width - len(label) - 20)
                tail = line.strip().removeprefix("[INFO] ")[-room:]
                spinner.update(f"{label} [dim]({count} files) {escape(tail)}[/dim]")
        code = proc.wait()
    if code != 0:
        raise StackError(f"{label} failed (exit {code}); read {log}")
