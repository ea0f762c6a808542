"""The console's pages (GET): what each shows, read through `services/console/reads.py`; and beside the dead-letter
page its one action, the redrive (POST, guarded as every console action is).

Mounted under `/console` by `services/http/console.py`; every page needs a session.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from projections.catalog import PROJECTIONS
from projections.log import LogError
from services.console import deadletters, integrations, live, outlook, reads
from services.console.web import (
    ConsoleRoute,
    Refused,
    database,
    guarded_form,
    rebuilds,
    render,
    session_of,
    settings_of,
    store_pool,
)
from services.engine import doctor
from services.engine.attention import describe_age
from services.platform.deadletters import NotFound
from services.stripe_adapter import simulation

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

@router.get("/accounts")
async def accounts_page(request: Request) -> Response:
    session_of(request)
    async with database(request) as db:
        rows, have = await reads.accounts(db)
    settings = settings_of(request)
    plan_names = {price: name for price, name in ((settings.stripe_pro_price_id, "pro monthly"),
                                                  (settings.stripe_pro_annual_price_id, "pro annual")) if price}
    for row in rows:
        row["key_state"] = reads.key_state(row, have["keys"])
        row["plan_status"] = reads.plan_status(row, have, plan_names)
    chart = await outlook.overview(request.app.state.runtime.res, datetime.now(UTC))
    return render(request, "accounts.html", section="accounts", accounts=rows, have=have, overview=chart)


@router.get("/accounts/{account_id:path}")
async def account_page(account_id: str, request: Request) -> Response:
    session_of(request)
    settings = settings_of(request)
    async with database(request) as db:
        account = await reads.account(db, account_id)
        if account is None:
            return render(request, "error.html", status=404, section="accounts", title="No such account",
                          reason=f"There is no account {account_id!r}.")
        chart = await reads.usage(db, account_id, list(settings.jobmeter_apis))
        keys = await reads.account_keys(db, account_id)
        suspension = await reads.suspension(db, account_id)
        reports = await reads.meter_reports(db, account_id, limit=20)
        hooks = await reads.webhook_log(await db.on(store_pool(request)), limit=20, account_id=account_id)
        deliveries = await reads.webhook_deliveries(db, account_id)
        mails = await reads.alert_mails(db, account_id)
        caps = await outlook.account_caps(db, account_id)
        alerts = await outlook.account_alerts(db, account_id)
        try:
            billing = await integrations.subscription_summary(db, request.app.state.runtime.res, account_id) \
                if account["model"] == "subscription" else None
            has_billing = True
        except integrations.NotAvailable:
            billing, has_billing = None, False
        payg = await reads.payg_recharges(db, account_id) if account["model"] == "payg" else None
        balance = await reads.payg_balance(db, account_id) if account["model"] == "payg" else None
    period, forecast = await outlook.period(request.app.state.runtime.res, account_id, datetime.now(UTC))
    return render(
        request, "account.html", section="accounts", account=account, chart=chart, keys=keys,
        period=period, forecast=forecast, caps=caps, alerts=alerts,
        key_state=reads.account_key_state(keys, suspension), reports=reports, hooks=hooks, deliveries=deliveries,
        mails=mails, payg=payg,
        balance=balance, billing=billing, has_billing=has_billing, default_topup=settings.jobmeter_payg_recharge_minor,
        can_checkout=integrations.subscriptions_available(), can_topup=integrations.topups_available(),
        plans=integrations.PLANS, simulation_off=simulation.refusal(settings.stripe_secret_key.get_secret_value()),
    )


@router.get("/stripe")
async def stripe_page(request: Request) -> Response:
    session_of(request)
    async with database(request) as db:
        totals = await reads.meter_totals(db)
        reports = await reads.meter_reports(db)
    return render(request, "stripe.html", section="stripe", totals=totals, reports=reports)


@router.get("/payg")
async def payg_page(request: Request) -> Response:
    session_of(request)
    async with database(request) as db:
        balances = await reads.payg_balances(db)
        recharges = await reads.payg_recharges(db)
    return render(request, "payg.html", section="payg", balances=balances, recharges=recharges)


@router.get("/attention")
async def attention_page(request: Request) -> Response:
    """What `jobmeter doctor` lists: everything not final past its bound, with the command that resolves it."""
    session_of(request)
    try:
        found = await doctor.gather(request.app.state.runtime.res, datetime.now(UTC))
    except (LogError, KafkaError) as error:
        return render(request, "attention.html", section="attention", items=[], why=f"Kafka: {error}")
    items = [{**item.as_json(), "age": describe_age(item.age_seconds)} for item in found]
    return render(request, "attention.html", section="attention", items=items, why=None)


@router.get("/webhooks")
async def webhooks_page(request: Request) -> Response:
    session_of(request)
    async with database(request) as db:
        hooks = await reads.webhook_log(await db.on(store_pool(request)), limit=50)
    return render(request, "webhooks.html", section="webhooks", hooks=hooks)


@router.get("/live")
async def live_page(request: Request) -> Response:
    session_of(request)
    return render(request, "live.html", section="live")


@router.get("/api/live")
async def live_data(request: Request) -> Response:
    session_of(request)
    schemas = sorted({p.schema for p in PROJECTIONS.values()})
    async with database(request) as db:
        data = await live.live(db, await db.on(store_pool(request)), schemas)
    data["rebuilds"] = {name: job.state for name, job in rebuilds(request).by_projection.items()}
    return JSONResponse(data)


@router.get("/api/accounts/{account_id:path}")
async def account_data(account_id: str, request: Request) -> Response:
    """What the account page keeps fresh without a reload: the key state."""
    session_of(request)
    async with database(request) as db:
        if await reads.account(db, account_id) is None:
            return JSONResponse({"detail": f"no account {account_id!r}"}, status_code=404)
        state = reads.account_key_state(await reads.account_keys(db, account_id),
                                        await reads.suspension(db, account_id))
    return JSONResponse({"account_id": account_id, "key_state": state})


@router.get("/rapidapi")
async def rapidapi_page(request: Request) -> Response:
    session_of(request)
    settings = settings_of(request)
    period = request.query_params.get("period") or datetime.now(UTC).strftime("%Y-%m")
    if len(period) != 7 or not period[:4].isdigit() or period[4] != "-" or not period[5:].isdigit():
        raise Refused(400, "period must look like 2026-11")
    async with database(request) as db:
        found, imported = await reads.rapidapi_month(db, period, settings.rapidapi_billing_object,
                                                     settings.rapidapi_reconcile_tolerance)
    return render(request, "rapidapi.html", section="rapidapi", period=period, users=found, imported=imported)


@router.get("/projections")
async def projections_page(request: Request) -> Response:
    session_of(request)
    schemas = sorted({p.schema for p in PROJECTIONS.values()})
    async with database(request) as db:
        folded = await live.positions(db, schemas)
    items = [
        {"name": p.name, "schema": p.schema, "topics": ", ".join(p.topics), "folded": folded.get(p.schema),
         "rebuild": rebuilds(request).by_projection.get(p.name)}
        for p in sorted(PROJECTIONS.values(), key=lambda p: p.name)
    ]
    return render(request, "projections.html", section="projections", projections=items)


@router.get("/deadletters")
async def deadletters_page(request: Request) -> Response:
    """What `jobmeter deadletters list` shows, each letter that a redrive could still help with its button."""
    session_of(request)
    consumer = request.query_params.get("consumer") or None
    try:
        letters = await deadletters.rows(request.app.state.runtime.res, consumer)
    except (LogError, KafkaError) as error:
        return render(request, "deadletters.html", section="deadletters", letters=[], consumer=consumer,
                      why=f"Kafka: {error}")
    return render(request, "deadletters.html", section="deadletters", letters=letters, consumer=consumer, why=None)


@router.post("/deadletters/{letter_id}/redrive")
async def redrive_letter(letter_id: str, request: Request) -> Response:
    """`jobmeter deadletters redrive ID`: through the consumer that refused it, the outcome recorded beside it."""
    await guarded_form(request)
    try:
        done = await deadletters.redrive_one(request.app.state.runtime.res, letter_id)
    except NotFound as error:
        raise Refused(404, str(error), "No such dead letter") from None
    notice = "redrive-applied" if done.applied else "redrive-refused"
    return RedirectResponse(f"/console/deadletters?notice={notice}", status_code=303)
