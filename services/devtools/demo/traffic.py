"""The demo's jobs, run through the sample gateway over HTTP: direct callers with their key, marketplace users
with RapidAPI's headers. What counts as completed is what the gateway answered `done`, never what was intended."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from jobmeter.settings import Settings
from services.devtools.demo.workload import Job, Member
from services.gateway.sample_client import Call, JobFailed, run_jobs


def headers_of(member: Member, settings: Settings) -> dict[str, str]:
    """How this member is known at the gateway: its key, or the headers RapidAPI's proxy adds."""
    if member.direct:
        if member.key is None:
            raise ValueError(f"{member.account_id} has no key yet")
        return {"Authorization": f"Bearer {member.key}"}
    return {
        "X-RapidAPI-Proxy-Secret": settings.rapidapi_proxy_secret.get_secret_value(),
        "X-RapidAPI-User": str(member.rapidapi_user),
        "X-RapidAPI-Subscription": str(member.plan),
    }


def call_of(member: Member, job: Job, settings: Settings, n: int) -> Call:
    return Call(job.api, job.asynchronous, headers_of(member, settings), text=f"job {n} of {member.account_id}?")


async def run(gateway: httpx.AsyncClient, settings: Settings, work: list[tuple[Member, Job]],
              completed: dict[tuple[str, str], str], *, concurrency: int = 32) -> Counter[str]:
    """Run every job; adds the done ones to `completed`; counts by outcome (`sync`, `async`, `failed: …`)."""
    calls = [call_of(m, job, settings, n) for n, (m, job) in enumerate(work)]
    outcomes: Counter[str] = Counter()
    results = await run_jobs(gateway, calls, concurrency=concurrency)
    for (member, _), call, result in zip(work, calls, results, strict=True):
        if isinstance(result, JobFailed):
            outcomes[f"failed: {str(result)[:80]}"] += 1
            continue
        completed[(call.api, str(result["job_id"]))] = member.account_id
        outcomes["async" if call.asynchronous else "sync"] += 1
    return outcomes


async def one_job(gateway: httpx.AsyncClient, member: Member, api: str, settings: Settings,
                  completed: dict[tuple[str, str], str]) -> tuple[int, Any]:
    """One sync job; its status and body (a done job is added to `completed`)."""
    response = await gateway.post(f"/v1/{api}", json={"text": "are you there?"}, headers=headers_of(member, settings))
    body = response.json()
    if response.status_code == 200:
        completed[(api, str(body["job_id"]))] = member.account_id
    return response.status_code, body
