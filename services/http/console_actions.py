"""The console's actions (POST): simulated Stripe deliveries, Checkout and top-up links, projection rebuilds.

Mounted under `/console` by `services/http/console.py`. Each checks origin, session and CSRF token first
(`guarded_form`).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from projections import catalog
from projections.log import LogError
from services.console import integrations, reads
from services.console.actions import SimulationOff, SimulationRefused, deliver
from services.console.web import ConsoleRoute, Refused, database, guarded_form, rebuilds, render, settings_of

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

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
    except SimulationOff as error:
        raise Refused(409, str(error), "Simulation is off") from None
    except SimulationRefused as error:
        raise Refused(502, str(error)) from None
    return back_to(account_id, "failure-sent")


@router.post("/accounts/{account_id:path}/simulate-payment-recovery")
async def simulate_recovery(account_id: str, request: Request) -> Response:
    await guarded_form(request)
    customer = await customer_of(request, account_id)
    try:
        await deliver(request.app, settings_of(request), "invoice.paid", customer)
    except SimulationOff as error:
        raise Refused(409, str(error), "Simulation is off") from None
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
    try:
        projection = catalog.get(name)  # a former name (`usage-ledger`) still names its projection
    except KeyError:
        raise Refused(404, f"There is no projection {name!r}.") from None
    try:
        rebuilds(request).start(settings_of(request), projection.name)
    except LogError as error:  # a ReplayError, or the log itself unreadable
        raise Refused(409, str(error)) from None
    return RedirectResponse("/console/projections?notice=rebuild-started", status_code=303)
