"""Waiting for a server we started: a clear error soon after it really exits, none for a moment's miss."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.devtools.stack import StackError
from services.devtools.stack.manager import _wait_healthy


class Starting:
    """A server that answers after `healthy_after` probes; `alive` says what each liveness check sees."""

    name = "kafka"
    env_key = "KAFKA_BOOTSTRAP_SERVERS"
    health_timeout = 30.0

    def __init__(self, healthy_after: int, alive: Iterator[bool]) -> None:
        self.probes, self.healthy_after, self.seen_alive = 0, healthy_after, alive

    async def check(self, address: str) -> None:
        self.probes += 1
        if self.probes <= self.healthy_after:
            raise ConnectionRefusedError(f"Connect call failed ({address!r})")

    def alive(self) -> bool:
        return next(self.seen_alive)

    def log_hint(self) -> str:
        return "the server log"


def sequence(*values: bool) -> Iterator[bool]:
    yield from values
    while True:
        yield values[-1]


async def test_a_server_that_exited_is_reported_as_such_and_soon() -> None:
    server = Starting(healthy_after=1000, alive=sequence(False))
    with pytest.raises(StackError, match="kafka exited while starting .*ConnectionRefusedError.*the server log"):
        await _wait_healthy(server, "127.0.0.1:9", own=True)  # type: ignore[arg-type]
    assert server.probes == 3  # not the whole health timeout


async def test_a_moment_the_check_misses_the_process_is_not_an_exit() -> None:
    server = Starting(healthy_after=4, alive=sequence(True, False, False, True, True))
    await _wait_healthy(server, "127.0.0.1:9", own=True)  # type: ignore[arg-type]
    assert server.probes == 5
