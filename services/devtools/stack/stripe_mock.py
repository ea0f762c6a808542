"""stripe-mock: Stripe's fixture server, built once with `go install` into the shared cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from jobmeter.settings import cache_dir
from services.devtools.stack.processes import HOST, StackError, file_lock, pick_port, run_logged, spawn
from services.devtools.stack.server import Server

if TYPE_CHECKING:
    from rich.console import Console

VERSION = "v0.203.0"
MODULE = "github.com/stripe/stripe-mock"


def _go() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if found is None:
        raise StackError("stripe-mock needs Go to build it: install Go (https://go.dev/dl/) or put `go` on PATH")
    return found


class StripeMock(Server):
    name = "stripe-mock"
    env_key = "STRIPE_API_BASE"
    role = "stripe api"
    health_timeout = 30.0

    @property
    def binary(self) -> Path:
        return cache_dir() / "bin" / "stripe-mock"

    @property
    def marker(self) -> str:
        return str(self.binary)

    def install(self, console: Console | None) -> None:
        if self.binary.exists():
            return
        with file_lock(cache_dir() / "bin" / ".stripe-mock.lock"):
            if self.binary.exists():
                return
            env = {**os.environ, "GOBIN": str(self.binary.parent)}
            # -x would be noisy; -v prints each package as it builds, enough to show progress.
            run_logged([_go(), "install", "-v", f"{MODULE}@{VERSION}"], cache_dir() / "stripe-mock-install.log",
                       console, f"Building stripe-mock {VERSION} with go install", env=env)  # fmt: skip
            if not self.binary.exists():
                raise StackError(f"go install produced no {self.binary}")

    def address(self) -> str | None:
        port = self.saved_ports().get("port")
        return f"http://{HOST}:{port}" if port else None

    def launch(self) -> None:
        port = pick_port(self.saved_ports().get("port"))
        self.save_ports({"port": port})
        # stripe-mock also reads PORT from the environment, which would clash with -http-addr.
        env = {k: v for k, v in os.environ.items() if k != "PORT"}
        # -http-addr alone still opens HTTPS on *:12112 (stripe-mock only counts -http/-http-port as "HTTP
        # only"), so a second clone would die on that port: park HTTPS on a system-chosen loopback port.
        cmd = [str(self.binary), "-http-addr", f"{HOST}:{port}", "-https-addr", f"{HOST}:0"]
        self.write_pid(spawn(cmd, self.log, env=env))

    async def check(self, address: str) -> None:
        import httpx

        # trust_env=False: a machine-wide HTTP proxy must not intercept a loopback health check.
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            response = await client.get(f"{address}/v1/customers", headers={"Authorization": "Bearer sk_test_123"})
        if response.status_code != 200:
            raise StackError(f"stripe-mock answered {response.status_code} to GET /v1/customers")
