"""The real local stack (Kafka, Postgres, stripe-mock), started and watched by the project itself.

Public API: `up`, `down`, `status`, `restart`, `kill`. The process helpers live in `processes`, the servers'
common shape in `server`; the public functions import `manager` lazily so that importing the package stays cheap.
"""

from __future__ import annotations

from services.devtools.stack.processes import ServiceStatus, StackError

__all__ = ["ServiceStatus", "StackError", "down", "kill", "restart", "status", "up"]


def up(quiet: bool = False, brokers: int | None = None) -> dict[str, str]:
    """Start (or reuse) every service, wait until each is healthy, write stack.env; returns its values. `brokers`
    asks for a Kafka cluster of that many KRaft nodes; by default the stack keeps the size it has (one at first)."""
    from services.devtools.stack import manager

    return manager.up(quiet=quiet, brokers=brokers)


def down(purge: bool = False) -> None:
    """Stop what `up` started; `purge` also deletes the data."""
    from services.devtools.stack import manager

    manager.down(purge=purge)


def status() -> list[ServiceStatus]:
    from services.devtools.stack import manager

    return manager.status()


def restart(name: str) -> str:
    """Stop one server gracefully and start it again on the same port and data; returns its address."""
    from services.devtools.stack import manager

    return manager.restart(name)


def kill(name: str) -> None:
    """SIGKILL one server (a crash, for fault injection); `up()` or `restart(name)` brings it back."""
    from services.devtools.stack import manager

    manager.kill(name)
