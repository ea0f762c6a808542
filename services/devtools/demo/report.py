"""Reading the outcome back from the engine, never from what the generator intended: the ledger's jobs per
surface and channel, and the channel report (the ledger beside what Stripe, RapidAPI and PAYG billed)."""

from __future__ import annotations

from projections.ledger import queries as ledger_queries
from services.devtools.demo.engine import DemoEngine, eventually
from services.devtools.demo.results import DemoResult
from services.devtools.demo.workload import Population
from services.ledger.channels import AccountChannels, channel_report


async def ledger_total(engine: DemoEngine) -> int:
    async with engine.res.pool_for("ledger").acquire() as conn:
        return await ledger_queries.total_jobs(conn)


async def read_ledger(engine: DemoEngine, result: DemoResult, *, timeout: float = 30) -> None:
    """Wait for the ledger to hold every job the gateway completed, then read it per surface and channel."""
    expected = len(result.completed)
    result.ledger_total, _ = await eventually(lambda: ledger_total(engine), lambda n: n >= expected, timeout=timeout)
    async with engine.res.pool_for("ledger").acquire() as conn:
        result.ledger_rows = await ledger_queries.jobs_by_api_and_channel(conn)
    direct = sum(r["jobs"] for r in result.ledger_rows if r["channel"] == "direct")
    result.check(
        "ledger exactly once", result.ledger_total == expected,
        f"{result.ledger_total} jobs in the ledger for {expected} distinct jobs completed through the gateway "
        f"({direct} direct, {result.ledger_total - direct} RapidAPI; {result.refused} refused, not billed)",
    )


def settled(rows: list[AccountChannels], misreported: str) -> bool:
    """Every channel agrees with the ledger, except the RapidAPI export's deliberate error."""
    for a in rows:
        expected_off = a.account_id == misreported
        if expected_off != bool(a.differences):
            return False
        if expected_off and not all(d.startswith("rapidapi reported") for d in a.differences):
            return False
    return True


async def read_channels(engine: DemoEngine, people: Population, result: DemoResult, *, timeout: float) -> None:
    """Wait until the meter reporter sent the closed windows (and the other channels caught up), then check."""
    wrong = people.misreported.account_id
    result.channels, ok = await eventually(lambda: channel_report(engine.res, result.period),
                                           lambda rows: settled(rows, wrong), timeout=timeout, every=0.5)
    subs = [a for a in result.channels if a.model == "subscription"]
    payg = [a for a in result.channels if a.model == "payg"]
    market = [a for a in result.channels if a.model == "rapidapi"]
    stripe_ok = sum(1 for a in subs if a.stripe_sent == a.ledger_direct)
    payg_ok = sum(1 for a in payg if a.payg_debits == a.ledger_direct)
    market_ok = sum(1 for a in market if a.rapidapi_declared == a.ledger_rapidapi)
    result.check(
        "channels match the ledger", ok and len(result.channels) == result.accounts,
        f"Stripe meter sent = ledger for {stripe_ok}/{len(subs)} subscribers "
        f"({sum(a.stripe_sent or 0 for a in subs)} jobs); PAYG debited = ledger for {payg_ok}/{len(payg)} "
        f"({sum(a.payg_debits or 0 for a in payg)}); RapidAPI declared = ledger for {market_ok}/{len(market)} "
        f"({sum(a.rapidapi_declared or 0 for a in market)}); only {wrong} differs, as the export was made to",
    )
