"""`/console`: the operator console. Server-rendered pages, a little plain JavaScript, no front-end build.

Every page and action needs a session, made by logging in with the admin token. Every action is a POST that
must come from this origin (Origin, else Referer) and carry the session's CSRF token. Every response carries
a strict Content-Security-Policy (no inline script). When Postgres, Kafka or Stripe cannot be reached, the
page says which and why, instead of a stack trace (see `services/console/web.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from projections.catalog import PROJECTIONS
from projections.log import LogError
from services.console import integrations, reads
from services.console.actions import SimulationRefused, deliver
from services.console.session import COOKIE, SESSION_SECONDS, new_session, token_matches
from services.console.web import (
    HERE,
    STATIC,
    ConsoleRoute,
    Refused,
    check_origin,
    database,
    form,
    guarded_form,
    key_of,
    own_origin,
    rebuilds,
    render,
    session_of,
    settings_of,
)

router = APIRouter(prefix="/console", tags=["console"], route_class=ConsoleRoute, include_in_schema=False)


# -- login -----------------------------------------------------------------------------------------------------

@router.get("/login")
async def login_page(request: Request) -> Response:
    return render(request, "login.html", section="login", failed=False)


@router.post("/login")
async def login(request: Request) -> Response:
    check_origin(request)
    fields = await form(request)
    expected = settings_of(request).jobmeter_admin_token.get_secret_value()
    if not token_matches(fields.get("token", ""), expected):
        await asyncio.sleep(0.2)  # a little friction for guessing, no lockout to abuse
        return render(request, "login.html", status=401, section="login", failed=True)
    response = RedirectResponse("/console/accounts", status_code=303)
    response.set_cookie(
        COOKIE, new_session(key_of(request)), max_age=SESSION_SECONDS, path="/console", httponly=True,
        samesite="strict", secure=own_origin(request).startswith("https://"),
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await guarded_form(request)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    # Public on purpose: CSS and JS hold nothing secret, and the login page needs them.
    if name not in STATIC:
        return Response("not found", status_code=404, media_type="text/plain")
    body = (HERE / "static" / name).read_bytes()
    return Response(body, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})


# -- pages -----------------------------------------------------------------------------------------------------

@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    session_of(request)
    return RedirectResponse("/console/accounts", status_code=303)


@router.get("/accounts")
async def accounts_page(request: Request) -> Response:
    session_of(request)
    async with database(request) as conn:
        rows, have = await reads.accounts(conn)
    settings = settings_of(request)
    plan_names = {price: name for price, name in ((settings.stripe_pro_price_id, "pro monthly"),
                                                  (settings.stripe_pro_annual_price_id, "pro annual")) if price}
    for row in rows:
        row["key_state"] = reads.key_state(row, have["keys"])
        row["plan_status"] = reads.plan_status(row, have, plan_names)
    return render(request, "accounts.html", section="accounts", accounts=rows, have=have)


@router.get("/accounts/{account_id:path}")
async def account_page(account_id: str, request: Request) -> Response:
    session_of(request)
    settings = settings_of(request)
    async with database(request) as conn:
        account = await reads.account(conn, account_id)
        if account is None:
            return render(request, "error.html", status=404, section="accounts", title="No such account",
                          reason=f"There is no account {account_id!r}.")
        chart = await reads.usage(conn, account_id, list(settings.jobmeter_apis))
        keys = await reads.account_keys(conn, account_id)
        suspension = await reads.suspension(conn, account_id)
        reports = await reads.meter_reports(conn, account_id, limit=20)
        hooks = await reads.webhook_log(conn, limit=20, account_id=account_id)
        try:
            billing = await integrations.subscription_summary(conn, request.app.state.runtime.res, account_id) \
                if account["model"] == "subscription" else None
            has_billing = True
        except integrations.NotAvailable:
            billing, has_billing = None, False
        payg = await reads.payg_recharges(conn, account_id) if account["model"] == "payg" else None
        balance = await reads.payg_balance(conn, account_id) if account["model"] == "payg" else None
    return render(
        request, "account.html", section="accounts", account=account, chart=chart, keys=keys,
        key_state=reads.account_key_state(keys, suspension), reports=reports, hooks=hooks, payg=payg,
        balance=balance, billing=billing, has_billing=has_billing, default_topup=settings.jobmeter_payg_recharge_minor,
        can_checkout=integrations.subscriptions_available(), can_topup=integrations.topups_available(),
        plans=integrations.PLANS,
    )


@router.get("/stripe")
async def stripe_page(request: Request) -> Response:
    session_of(request)
    async with database(request) as conn:
        totals = await reads.meter_totals(conn)
        reports = await reads.meter_reports(conn)
    return render(request, "stripe.html", section="stripe", totals=totals, reports=reports)


@router.get("/payg")
async def payg_page(request: Request) -> Response:
    session_of(request)
    async with database(request) as conn:
        balances = await reads.payg_balances(conn)
        recharges = await reads.payg_recharges(conn)
    return render(request, "payg.html", section="payg", balances=balances, recharges=recharges)


@router.get("/webhooks")
async def webhooks_page(request: Request) -> Response:
    session_of(request)
    async with database(request) as conn:
        hooks = await reads.webhook_log(conn, limit=50)
    return render(request, "webhooks.html", section="webhooks", hooks=hooks)


@router.get("/live")
async def live_page(request: Request) -> Response:
    session_of(request)
    return render(request, "live.html", section="live")


@router.get("/api/live")
async def live_data(request: Request) -> Response:
    session_of(request)
    schemas = sorted({p.schema for p in PROJECTIONS.values()})
    async with database(request) as conn:
        data = await reads.live(conn, schemas)
    data["rebuilds"] = {name: job.state for name, job in rebuilds(request).by_projection.items()}
    return JSONResponse(data)


@router.get("/api/accounts/{account_id:path}")
async def account_data(account_id: str, request: Request) -> Response:
    """What the account page keeps fresh without a reload: the key state."""
    session_of(request)
    async with database(request) as conn:
        if await reads.account(conn, account_id) is None:
            return JSONResponse({"detail": f"no account {account_id!r}"}, status_code=404)
        state = reads.account_key_state(await reads.account_keys(conn, account_id),
                                        await reads.suspension(conn, account_id))
    return JSONResponse({"account_id": account_id, "key_state": state})


@router.get("/rapidapi")
async def rapidapi_page(request: Request) -> Response:
    session_of(request)
    settings = settings_of(request)
    period = request.query_params.get("period") or datetime.now(UTC).strftime("%Y-%m")
    if len(period) != 7 or not period[:4].isdigit() or period[4] != "-" or not period[5:].isdigit():
        raise Refused(400, "period must look like 2026-11")
    found: list[Any] | None = None
    imported = False
    async with database(request) as conn:
        if await reads.has_table(conn, "rapidapi.reported"):
            try:
                from projections.rapidapi.queries import export_imported, figures
                from projections.rapidapi.reconcile import Tolerance, reconcile
            except ImportError:
                pass
            else:
                users = await figures(conn, period, settings.rapidapi_billing_object)
                imported = await export_imported(conn, period)
                tolerance = Tolerance.parse(settings.rapidapi_reconcile_tolerance)
                flagged = {(d.rapidapi_user, d.kind) for d in reconcile(period, users, tolerance,
                                                                         export_imported=imported)}
                found = [
                    {**u.__dict__, "flags": sorted(k for user, k in flagged if user == u.rapidapi_user)}
                    for u in users
                ]
    return render(request, "rapidapi.html", section="rapidapi", period=period, users=found, imported=imported)


@router.get("/projections")
async def projections_page(request: Request) -> Response:
    session_of(request)
    schemas = sorted({p.schema for p in PROJECTIONS.values()})
    async with database(request) as conn:
        folded = await reads.positions(conn, schemas)
    items = [
        {"name": p.name, "schema": p.schema, "topics": ", ".join(p.topics), "folded": folded.get(p.schema),
         "rebuild": rebuilds(request).by_projection.get(p.name)}
        for p in sorted(PROJECTIONS.values(), key=lambda p: p.name)
    ]
    return render(request, "projections.html", section="projections", projections=items)


# -- actions ---------------------------------------------------------------------------------------------------

async def customer_of(request: Request, account_id: str) -> str:
    async with database(request) as conn:
        account = await reads.account(conn, account_id)
    if account is None:
        raise Refused(404, f"There is no account {account_id!r}.")
    if not account.get("stripe_customer_id"):
        raise Refused(400, f"Account {account_id} has no Stripe customer, so Stripe cannot bill it.")
    return str(account["stripe_customer_id"])


def back_to(account_id: str, notice: str) -> Response:
    return RedirectResponse(f"/console/accounts/{quote(account_id, safe='')}?notice={notice}", status_code=303)


@router.post("/accounts/{account_id:path}/simulate-payment-failure")
async def simulate_failure(account_id: str, request: Request) -> Response:
    await guarded_form(request)
    customer = await customer_of(request, account_id)
    try:
        await deliver(request.app, settings_of(request), "invoice.payment_failed", customer, final=True)
    except SimulationRefused as error:
        raise Refused(502, str(error)) from None
    return back_to(account_id, "failure-sent")


@router.post("/accounts/{account_id:path}/simulate-payment-recovery")
async def simulate_recovery(account_id: str, request: Request) -> Response:
    await guarded_form(request)
    customer = await customer_of(request, account_id)
    try:
        await deliver(request.app, settings_of(request), "invoice.paid", customer)
    except SimulationRefused as error:
        raise Refused(502, str(error)) from None
    return back_to(account_id, "recovery-sent")


async def checkout_page(request: Request, account_id: str, what: str, opening: Coroutine[Any, Any, str]) -> Response:
    try:
        url = await opening
    except integrations.NotAvailable as error:
        raise Refused(501, str(error), "Not available") from None
    except ValueError as error:  # the area's own refusal: a price not configured, not a PAYG account, …
        raise Refused(400, str(error), "Cannot start Checkout") from None
    return render(request, "checkout.html", section="accounts", account_id=account_id, what=what, url=url)


@router.post("/accounts/{account_id:path}/checkout")
async def open_checkout(account_id: str, request: Request) -> Response:
    _, fields = await guarded_form(request)
    customer = await customer_of(request, account_id)
    res = request.app.state.runtime.res
    plan = fields.get("plan", "pro_monthly")
    return await checkout_page(request, account_id, "Checkout for the subscription",
                               integrations.subscription_checkout(res, account_id, customer, plan))


@router.post("/accounts/{account_id:path}/topup")
async def open_topup(account_id: str, request: Request) -> Response:
    _, fields = await guarded_form(request)
    raw = fields.get("amount_minor", "").strip()
    if raw and not raw.isdigit():
        raise Refused(400, "The amount is a whole number of minor units (cents), e.g. 2000 for 20.00.")
    res = request.app.state.runtime.res
    return await checkout_page(request, account_id, "A PAYG top-up",
                               integrations.topup_checkout(res, account_id, int(raw) if raw else None))


@router.post("/projections/{name}/rebuild")
async def rebuild(name: str, request: Request) -> Response:
    await guarded_form(request)
    if name not in PROJECTIONS:
        raise Refused(404, f"There is no projection {name!r}.")
    try:
        rebuilds(request).start(settings_of(request), name)
    except LogError as error:  # a ReplayError, or the log itself unreadable
        raise Refused(409, str(error)) from None
    return RedirectResponse("/console/projections?notice=rebuild-started", status_code=303)
