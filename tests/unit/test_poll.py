"""Background work: a worker that dies of a bug is started again, one that is cancelled stays stopped; a poll
loop runs busy passes back to back, waits when idle and backs off while passes fail."""

from __future__ import annotations

import asyncio

import pytest

from services.platform.poll import PollPolicy, poll, supervised


async def test_a_failing_worker_is_restarted_until_it_finishes() -> None:
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("a bug")

    await asyncio.wait_for(supervised("flaky", flaky, pause=0.01), timeout=5)
    assert len(runs) == 3


async def test_cancellation_is_not_a_failure() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(supervised("forever", forever, pause=0.01))
    await started.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


class ScriptedSleeps:
    """Records the pauses `poll` asks for and cancels it once it has asked for `stop_after` of them."""

    def __init__(self, stop_after: int) -> None:
        self.pauses: list[float] = []
        self.stop_after = stop_after

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        if len(self.pauses) >= self.stop_after:
            raise asyncio.CancelledError


async def run_passes(outcomes: list[bool | Exception], policy: PollPolicy) -> list[float]:
    script = iter(outcomes)

    async def one_pass() -> bool:
        outcome = next(script)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    sleeps = ScriptedSleeps(stop_after=len(outcomes) + (1 if policy.first_delay else 0))
    with pytest.raises(asyncio.CancelledError):
        await poll("test", one_pass, policy, sleep=sleeps)
    return sleeps.pauses


async def test_a_busy_pass_runs_again_at_once_and_an_idle_one_waits() -> None:
    assert await run_passes([True, True, False, True, False], PollPolicy(idle=2.0)) == [0, 0, 2.0, 0, 2.0]


async def test_failures_back_off_exponentially_up_to_the_bound_and_reset_on_success() -> None:
    outcomes: list[bool | Exception] = [OSError("down"), RuntimeError("a bug"), OSError("down"), OSError("down"),
                                        OSError("down"), False]
    assert await run_passes(outcomes, PollPolicy(idle=1.0, max_backoff=10.0)) == [2.0, 4.0, 8.0, 10.0, 10.0, 1.0]


async def test_a_first_delay_comes_before_the_first_pass() -> None:
    assert await run_passes([False], PollPolicy(idle=3.0, first_delay=7.0)) == [7.0, 3.0]


@pytest.mark.parametrize(
    ("idle", "failures", "expected"),
    [(1.0, 0, 1.0), (1.0, 1, 2.0), (1.0, 5, 30.0), (0.0, 1, 0.1), (3600.0, 1, 30.0)],
)
def test_the_pause_after_failures(idle: float, failures: int, expected: float) -> None:
    assert PollPolicy(idle=idle).pause(failures) == expected
