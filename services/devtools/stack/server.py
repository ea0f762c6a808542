"""What every local server (Kafka, Postgres, stripe-mock) shares: pid and ports files, logs, and how to stop it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from jobmeter.settings import state_dir
from services.devtools.stack.processes import hard_kill, pid_alive, read_int, terminate, write_atomic

if TYPE_CHECKING:
    from rich.console import Console


class Server:
    """What every local server shares: a pid file, a ports file, a log folder, and how to stop it."""

    name = ""
    env_key = ""
    role = ""  # what it is to jobmeter, for `jobmeter stack status`
    health_timeout = 60.0

    @property
    def marker(self) -> str:
        """A string in the server's command line, to tell our process from a recycled pid."""
        return self.name

    @property
    def run_dir(self) -> Path:
        return state_dir() / "run"

    @property
    def log_dir(self) -> Path:
        return state_dir() / "logs" / self.name

    @property
    def log(self) -> Path:
        return self.log_dir / "console.log"

    def log_hint(self) -> str:
        """The file(s) to read when the server does not come up."""
        return str(self.log)

    def pid(self) -> int | None:
        return read_int(self.run_dir / f"{self.name}.pid")

    def alive(self) -> bool:
        return pid_alive(self.pid(), self.marker)

    def write_pid(self, pid: int) -> None:
        write_atomic(self.run_dir / f"{self.name}.pid", f"{pid}\n")

    def saved_ports(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads((self.run_dir / f"{self.name}.ports").read_text()).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def save_ports(self, ports: dict[str, int]) -> None:
        write_atomic(self.run_dir / f"{self.name}.ports", json.dumps(ports) + "\n")

    def address(self) -> str | None:
        """The env value (bootstrap servers, URL) for the saved ports; None before the first start."""
        raise NotImplementedError

    def env_value(self) -> str | None:
        """What `env_key` is set to for clients: the address, or for a node of a cluster every node's address."""
        return self.address()

    def install(self, console: Console | None) -> None:
        """Fetch binaries once (cached); a no-op when they are present."""

    def launch(self) -> None:
        """Start the server on its saved ports (new ones if taken) without waiting for health."""
        raise NotImplementedError

    async def check(self, address: str) -> None:
        """Raise unless a real client gets a real answer from `address`."""
        raise NotImplementedError

    def stop(self) -> None:
        terminate(self.pid(), self.marker)

    def kill(self) -> None:
        hard_kill(self.pid(), self.marker)
