"""The key lifecycle's workers run on the one poll helper: what a notifier pass and a clock pass tell it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest

from jobmeter.settings import Settings
from services.keys import grace_clock, notify
from services.platform.poll import PollPolicy
from services.platform.transient import TRANSIENT

Pass = Callable[[], Awaitable[bool]]


def capture(monkeypatch: pytest.MonkeyPatch, module: Any) -> dict[str, Any]:
    """Replace the module's `poll` with one that records the pass and policy instead of looping."""
    seen: dict[str, Any] = {}

    async def fake_poll(name: str, one_pass: Pass, policy: PollPolicy) -> None:
        seen.update(name=name, one_pass=one_pass, policy=policy)

    monkeypatch.setattr(module, "poll", fake_poll)
    return seen


async def test_a_notifier_pass_is_busy_while_it_sends_and_fails_transiently_when_mail_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outcomes = iter([(3, 0), (0, 0), (1, 2)])

    async def fake_notify_once(*_: Any, **__: Any) -> tuple[int, int]:
        return next(outcomes)

    monkeypatch.setattr(notify, "notify_once", fake_notify_once)
    seen = capture(monkeypatch, notify)
    await notify.run_notifier(SimpleNamespace(settings=Settings(), pool=None, pool_for=lambda _: None), "key_lifecycle",  # type: ignore[arg-type]
                              idle_seconds=0.2)
    assert seen["policy"] == PollPolicy(idle=0.2)
    assert await seen["one_pass"]() is True
    assert await seen["one_pass"]() is False
    with pytest.raises(notify.NotSent) as raised:
        await seen["one_pass"]()
    assert isinstance(raised.value, TRANSIENT)  # poll backs off as it did by hand: 0.4 s, 0.8 s, … up to 30 s


async def test_a_clock_pass_publishes_what_is_due_and_waits_for_the_next_look(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[set[Any]] = []

    async def fake_ticks(res: Any, schema: str, *, already: set[Any]) -> list[Any]:
        calls.append(already)
        return []

    monkeypatch.setattr(grace_clock, "publish_due_ticks", fake_ticks)
    seen = capture(monkeypatch, grace_clock)
    await grace_clock.run_grace_clock(SimpleNamespace(), "key_lifecycle", every_seconds=60)  # type: ignore[arg-type]
    assert seen["policy"] == PollPolicy(idle=60)
    assert await seen["one_pass"]() is False
    assert await seen["one_pass"]() is False
    assert calls[0] is calls[1]  # one memory of published ticks for the life of the worker
