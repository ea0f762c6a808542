"""jobmeter's own services as real child processes, so a fault is a real SIGKILL, not a simulation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from services.platform.children import dies_with_parent


@dataclass
class ServiceProcess:
    """`jobmeter run NAME` as a child process that can be killed and started again."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    kills: int = field(default=0)
    exits: int = field(default=0)  # times it died on its own and was started again (`restart: unless-stopped`)
    held_down: bool = field(default=False)  # killed by a fault, to be started by that fault

    def start(self) -> None:
        self.held_down = False
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            self.command(), env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=dies_with_parent(),  # a bench or chaos run killed outright takes its services with it
        )

    def command(self) -> list[str]:
        """What is started: `jobmeter run` with this process's arguments."""
        return [sys.executable, "-m", "services.cli.main", "run", *self.args]

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, exactly like a crash or an OOM kill."""
        self.held_down = True
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.kills += 1

    def revive(self) -> bool:
        """What docker-compose's `restart: unless-stopped` does: start it again if it exited on its own."""
        if self.held_down or self.process is None or self.process.poll() is None:
            return False
        self.exits += 1
        self.start()
        return True

    def stop(self) -> None:
        self.held_down = True
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None
