"""PostgreSQL from Debian's package, run as the `postgres` user with its data in the state dir."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

from rich.console import Console

from jobmeter.settings import state_dir
from services.devtools.stack.processes import HOST, StackError, pick_port, read_int, run_logged
from services.devtools.stack.server import Server

DATABASE = "jobmeter"
PG_ROOT = Path("/usr/lib/postgresql")


def _majors() -> list[int]:
    found = [p.parent.parent.name for p in PG_ROOT.glob("*/bin/pg_ctl")]
    return sorted((int(m) for m in found if m.isdigit()), reverse=True)


class Postgres(Server):
    name = "postgres"
    env_key = "DATABASE_URL"
    role = "database"
    health_timeout = 60.0

    @property
    def data_dir(self) -> Path:
        return state_dir() / "data" / "postgres"

    @property
    def socket_dir(self) -> Path:
        return self.run_dir / "pg-socket"

    @property
    def marker(self) -> str:
        # The postmaster's command line names its data folder: a recycled pid or another clone's server won't.
        return str(self.data_dir)

    @property
    def log(self) -> Path:
        return self.log_dir / "postgres.log"

    def bin_dir(self) -> Path:
        majors = _majors()
        if not majors:
            raise StackError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin)")
        # Existing data only opens with its own major version, so prefer that one when installed.
        wanted = read_int(self.data_dir / "PG_VERSION")
        return PG_ROOT / str(wanted if wanted in majors else majors[0]) / "bin"

    def install(self, console: Console | None) -> None:
        if _majors():
            return
        if os.geteuid() != 0:
            raise StackError("PostgreSQL is missing; install it: sudo apt-get install -y postgresql")
        # Said even with --quiet: installing system packages is not something to do silently.
        (console or Console(stderr=True)).print(
            "PostgreSQL not found: running apt-get update && apt-get install -y postgresql"
        )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        log = self.log_dir / "apt-get.log"
        run_logged(["apt-get", "update"], log, console, "apt-get update", env=env)
        run_logged(["apt-get", "install", "-y", "postgresql"], log, console, "Installing PostgreSQL", env=env)
        if not _majors():
            raise StackError(f"apt-get installed no PostgreSQL server; read {log}")

    def address(self) -> str | None:
        port = self.saved_ports().get("port")
        return f"postgresql://postgres@{HOST}:{port}/{DATABASE}" if port else None

    def _run(self, *cmd: str, log: Path) -> int:
        # The server refuses to run as root: as root, act as the `postgres` user the package creates.
        argv = [str(self.bin_dir() / cmd[0]), *cmd[1:]]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        with log.open("a") as out:
            return subprocess.run(argv, cwd="/", stdout=out, stderr=subprocess.STDOUT, check=False).returncode

    def _own(self, *paths: Path) -> None:
        if os.geteuid() != 0:
            for path in paths:
                path.mkdir(parents=True, exist_ok=True)
            return
        user = pwd.getpwnam("postgres")
        for path in paths:
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, user.pw_uid, user.pw_gid)
            path.chmod(0o700)
            # postgres must walk down to its folders; add only the search bit where it is missing.
            for parent in path.parents:
                mode = parent.stat().st_mode
                if not mode & stat.S_IXOTH:
                    parent.chmod(mode | stat.S_IXOTH)

    def _initdb_once(self) -> None:
        done = self.data_dir.with_name("postgres.initdb-ok")
        if done.exists():
            return
        # No marker means no initdb or a half one: initdb needs an empty folder, so start clean.
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self._own(self.data_dir)
        log = self.log_dir / "initdb.log"
        code = self._run("initdb", "-D", str(self.data_dir), "--auth=trust", "-U", "postgres",
                         "-E", "UTF8", "--no-locale", log=log)  # fmt: skip
        if code != 0:
            raise StackError(f"initdb failed; read {log}")
        done.write_text("ok\n")

    def launch(self) -> None:
        self._own(self.log_dir, self.socket_dir)
        self._initdb_once()
        port = pick_port(self.saved_ports().get("port"))
        self.save_ports({"port": port})
        opts = f"-p {port} -k {shlex.quote(str(self.socket_dir))} -c listen_addresses={HOST}"
        code = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log), "-w", "-t", "60",
                         "-o", opts, "start", log=self.log_dir / "pg_ctl.log")  # fmt: skip
        pid = read_int(self.data_dir / "postmaster.pid")
        if code != 0 or pid is None:
            raise StackError(f"pg_ctl start failed; read {self.log_hint()}")
        self.write_pid(pid)

    def pid(self) -> int | None:
        # postmaster.pid is the server's own truth; ours can be stale after a crash and a pg_ctl restart.
        return read_int(self.data_dir / "postmaster.pid") or super().pid()

    def stop(self) -> None:
        if not self.alive():
            return
        if self._run("pg_ctl", "-D", str(self.data_dir), "stop", "-m", "fast", "-w", "-t", "30",
                     log=self.log_dir / "pg_ctl.log") != 0:  # fmt: skip
            self.kill()

    async def check(self, address: str) -> None:
        import asyncpg

        if address == self.address():
            # Our own server: the database may not exist yet, so create it through the maintenance one.
            conn = await asyncpg.connect(address.rsplit("/", 1)[0] + "/postgres", timeout=5)
            try:
                if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                    await conn.execute(f'CREATE DATABASE "{DATABASE}"')
            finally:
                await conn.close()
        conn = await asyncpg.connect(address, timeout=5)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    def log_hint(self) -> str:
        return f"{self.log} (and {self.log_dir / 'pg_ctl.log'})"
