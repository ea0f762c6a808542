"""The demo's workload, start to end, on an engine and gateway already serving (`demo_engine`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from jobmeter.settings import get_settings
from services.devtools.demo import marketplace, population, report, scenarios, traffic
from services.devtools.demo.engine import DemoEngine
from services.devtools.demo.results import DemoResult
from services.devtools.demo.workload import Population, generate
from services.gateway.sample_client import surfaces

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


async def run_workload(engine: DemoEngine, *, accounts: int = 50, seed: int = 7,
                       progress: Progress = _quiet) -> DemoResult:
    """Create the customers, run their traffic through the gateway, play the scenarios, read back what was
    billed where. Every scenario ends in a check on the result."""
    s = engine.settings
    result = DemoResult(engine.url, engine.gateway_url, datetime.now(UTC).strftime("%Y-%m"), accounts=accounts)
    async with engine.admin() as admin, engine.gateway() as gateway:
        sync_apis, async_apis = await surfaces(gateway)
        people: Population = generate(sync_apis, async_apis, accounts=accounts, seed=seed)
        progress(f"creating {len(people.members) - len(people.of('rapidapi'))} Stripe customers in stripe-mock")
        await population.create_customers(engine, people)
        progress("registering the direct accounts and issuing their keys (POST /v1/accounts, /v1/keys)")
        await population.register(admin, people)
        await population.issue_keys(admin, people)
        progress("topping PAYG balances up through Checkout + signed webhook; saving cards and thresholds")
        await population.fund_payg(engine, admin, people)
        work = [(m, job) for m in people.members for job in m.jobs]
        progress(f"running {len(work)} jobs through the sample gateway ({', '.join(sync_apis)} sync; "
                 f"{', '.join(async_apis)} submit + poll)")
        outcomes = await traffic.run(gateway, s, work, result.completed)
        failed = {k: n for k, n in outcomes.items() if k.startswith("failed")}
        result.check("traffic through the gateway", not failed,
                     f"{outcomes['sync']} sync + {outcomes['async']} async jobs done for {accounts} accounts "
                     f"({len(people.of('rapidapi'))} via RapidAPI headers)" + (f"; {failed}" if failed else ""))
        progress("upgrading a subscriber mid-period (proration preview, then the change)")
        await scenarios.upgrade(engine, admin, people, result)
        progress("waiting for the PAYG balance to cross its threshold and the recharge to go to Stripe")
        await scenarios.payg_recharge(engine, admin, people, result, population.CROSSER_FUNDS_MINOR)
        progress("failing a subscriber's final payment, then paying the invoice")
        await scenarios.dunning(engine, admin, gateway, people, result)
    progress("waiting for the ledger to hold every completed job")
    await report.read_ledger(engine, result)
    progress("importing a RapidAPI export and reconciling the month")
    await marketplace.reconcile_export(engine, people, result)
    # The fold's window comes from the process settings; wait out one window, its lateness and a few polls.
    window = get_settings().jobmeter_meter_window_seconds
    progress(f"waiting for the meter reporter to send the closed {window}s windows to Stripe")
    await report.read_channels(engine, people, result,
                               timeout=window + s.jobmeter_meter_lateness_seconds + 30)
    return result
