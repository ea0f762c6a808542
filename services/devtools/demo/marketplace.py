"""The RapidAPI side of the demo: write the month's export as RapidAPI's provider dashboard does (one user's usage
deliberately off), import it, and show what the reconciler flags."""

from __future__ import annotations

import csv
import io
import tempfile
from collections import Counter
from pathlib import Path

from projections.rapidapi.queries import figures
from projections.rapidapi.reconcile import UserFigures
from services.devtools.demo.engine import DemoEngine, eventually
from services.devtools.demo.results import DemoResult
from services.devtools.demo.workload import Population
from services.rapidapi.importer import import_export
from services.rapidapi.reconcile import reconcile_month

OFF_BY = 3  # what RapidAPI's export gets wrong for one user
HEADER = ["api_owner_user_name", "api_name", "subscription_owner_id", "subscription_owner_user_name",
          "billing_plan_name", "quota_object_name", "usage"]


def export_csv(people: Population, done: Counter[tuple[str, str]], billing_object: str) -> str:
    """The quota export (docs/rapidapi.md): a row per user and API for the billing object, and RapidAPI's own
    `Requests` quota beside it (imported, never compared). `done` counts (account, api) jobs completed."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for n, m in enumerate(people.of("rapidapi")):
        apis = sorted({api for (account, api) in done if account == m.account_id})
        for i, api in enumerate(apis):
            units = done[(m.account_id, api)] + (OFF_BY if m is people.misreported and i == 0 else 0)
            row = ["jobmeter", f"Jobmeter {api.title()}", str(5000 + n), str(m.rapidapi_user), str(m.plan)]
            writer.writerow([*row, billing_object, units])
            writer.writerow([*row, "Requests", units * 3])
    return out.getvalue()


async def reconcile_export(engine: DemoEngine, people: Population, result: DemoResult) -> None:
    s = engine.settings
    done = Counter((account, api) for (api, _), account in result.completed.items())
    market = {m.rapidapi_user: sum(n for (a, _), n in done.items() if a == m.account_id)
              for m in people.of("rapidapi")}

    async def seen() -> list[UserFigures]:
        async with engine.res.pool_for("rapidapi").acquire() as conn:
            return await figures(conn, result.period, s.rapidapi_billing_object)

    def caught_up(users: list[UserFigures]) -> bool:
        by_user = {u.rapidapi_user: u for u in users}
        return all(u in by_user and by_user[u].ledger_jobs == by_user[u].declared_units == n
                   for u, n in market.items())

    await eventually(seen, caught_up, timeout=30)
    with tempfile.TemporaryDirectory(prefix="jobmeter-demo-") as folder:
        path = Path(folder) / f"rapidapi-quotas-{result.period}.csv"
        path.write_text(export_csv(people, done, s.rapidapi_billing_object))
        imported = await import_export(engine.res, path, result.period)
    rows = imported.published

    def reported(users: list[UserFigures]) -> bool:
        by_user = {u.rapidapi_user: u for u in users}
        return all(u in by_user and by_user[u].reported_units >= n for u, n in market.items())

    await eventually(seen, reported, timeout=30)
    month = await reconcile_month(engine.res, result.period)
    flagged = {d.rapidapi_user for d in month.discrepancies}
    wrong = people.misreported.rapidapi_user
    kinds = sorted(d.kind for d in month.discrepancies if d.rapidapi_user == wrong)
    figure = next((u for u in month.users if u.rapidapi_user == wrong), None)
    shown = (f"reported {figure.reported_units} vs declared {figure.declared_units} / ledger {figure.ledger_jobs}"
             if figure else "not in the figures")
    result.check(
        "RapidAPI reconciliation",
        flagged == {wrong} and "declared_vs_reported" in kinds and not imported.errors,
        f"{rows} export rows imported ({len(imported.errors)} unreadable); flagged {sorted(flagged)}: {wrong} "
        f"{shown} ({', '.join(kinds)}); {len(market) - len(flagged & set(market))} other users agree",
    )
