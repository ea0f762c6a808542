"""A caller of the sample gateway: one job on any surface, submitting and polling where the surface is async.

What the demo's traffic generator (and a user's smoke test) needs: `await complete_job(client, "classify", ...)`
returns the finished job's body, whichever kind of surface it is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx


class JobFailed(RuntimeError):
    """The gateway refused the job or it did not finish in time; the message has the gateway's answer."""


async def surfaces(client: httpx.AsyncClient) -> tuple[list[str], list[str]]:
    """(sync, async) surface names, as the gateway announces them on /healthz."""
    body = (await client.get("/healthz")).raise_for_status().json()
    return list(body["sync"]), list(body["async"])


async def complete_job(
    client: httpx.AsyncClient, api: str, *, asynchronous: bool, headers: dict[str, str] | None = None,
    text: str = "", poll_seconds: float = 0.1, timeout: float = 30.0,
) -> dict[str, Any]:
    """Run one job to completion through the gateway; the body of its `done` answer."""
    if not asynchronous:
        response = await client.post(f"/v1/{api}", json={"text": text}, headers=headers)
        if response.status_code != 200:
            raise JobFailed(f"{api}: {response.status_code} {response.text}")
        return dict(response.json())
    submitted = await client.post(f"/v1/{api}/jobs", json={"text": text}, headers=headers)
    if submitted.status_code != 202:
        raise JobFailed(f"{api}: {submitted.status_code} {submitted.text}")
    poll = submitted.json()["poll"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = await client.get(poll, headers=headers)
        if answer.status_code != 200:
            raise JobFailed(f"{api}: {answer.status_code} {answer.text}")
        if answer.json()["status"] == "done":
            return dict(answer.json())
        await asyncio.sleep(poll_seconds)
    raise JobFailed(f"{api}: job {submitted.json()['job_id']} not done within {timeout:.0f}s")


@dataclass(frozen=True)
class Call:
    """One job to run: on which surface, of which kind, as whom (the key or the RapidAPI headers)."""

    api: str
    asynchronous: bool
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""


async def run_jobs(client: httpx.AsyncClient, calls: Sequence[Call], *, concurrency: int = 16,
                   poll_seconds: float = 0.05) -> list[dict[str, Any] | JobFailed]:
    """Run many jobs, at most `concurrency` at a time; each result is the done body, or the JobFailed."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Call) -> dict[str, Any] | JobFailed:
        async with gate:
            try:
                return await complete_job(client, call.api, asynchronous=call.asynchronous, headers=call.headers,
                                          text=call.text, poll_seconds=poll_seconds)
            except JobFailed as error:
                return error

    return list(await asyncio.gather(*(one(c) for c in calls)))
