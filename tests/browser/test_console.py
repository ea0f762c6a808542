"""The operator console in a real browser: log in, read an account's usage, fail its payment and watch its keys
and the webhook log change, start a top-up; every page passes an accessibility smoke check and logs no errors."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from jobmeter.settings import Settings
from services.http.app import create_app
from services.platform.serving import serving
from tests.integration.helpers import INGEST, eventually, fetchval, job, register

if TYPE_CHECKING:  # for annotations only: at run time the module comes from importorskip, which skips without it
    from playwright.async_api import Page

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
]
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright (Python) is not installed")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ADMIN_TOKEN = "dev-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CONSUMERS = ["accounts", "ledger", "keys", "key-lifecycle", "payg"]
PAGES = ["/console/accounts", "/console/accounts/acme", "/console/accounts/payco", "/console/stripe",
         "/console/payg", "/console/webhooks", "/console/live", "/console/rapidapi", "/console/projections"]

# The smoke check: one h1, headings that never skip a level going down, a label for every input, alt text
# for images and a name for SVG images, text for buttons and links, a language and a title.
A11Y_PROBLEMS = """() => {
  const problems = [];
  const h1s = document.querySelectorAll("h1");
  if (h1s.length !== 1) problems.push(`${h1s.length} h1 elements`);
  let last = 0;
  for (const h of document.querySelectorAll("h1, h2, h3, h4, h5, h6")) {
    const level = Number(h.tagName[1]);
    if (last && level > last + 1) problems.push(`${h.tagName} "${h.textContent.trim()}" follows h${last}`);
    last = level;
  }
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden") continue;
    const label = (el.id && document.querySelector(`label[for="${CSS.escape(el.id)}"]`)) || el.closest("label")
      || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
    if (!label) problems.push(`input ${el.name || el.id} has no label`);
  }
  for (const img of document.querySelectorAll("img")) {
    if (!img.hasAttribute("alt")) problems.push(`img ${img.src} has no alt`);
  }
  for (const svg of document.querySelectorAll("svg:not([aria-hidden=true])")) {
    if (svg.getAttribute("role") !== "img" || !(svg.getAttribute("aria-label") || svg.getAttribute("aria-labelledby")))
      problems.push("an svg that is neither hidden nor a named image");
  }
  for (const el of document.querySelectorAll("button, a")) {
    if (!el.textContent.trim() && !el.getAttribute("aria-label")) problems.push(`${el.tagName} without text`);
  }
  if (!document.documentElement.lang) problems.push("no lang on <html>");
  if (!document.title.trim()) problems.push("no <title>");
  return problems;
}"""


@dataclass
class Console:
    url: str
    client: httpx.AsyncClient
    acme_key: str


@dataclass
class BrowserLog:
    errors: list[str] = field(default_factory=list)


async def seed(settings: Settings, client: httpx.AsyncClient) -> str:
    for account, model in (("acme", "subscription"), ("payco", "payg")):
        await register(client, account, model)
    key = await client.post("/v1/keys", json={"account_id": "acme"}, headers=ADMIN)
    assert key.status_code == 201, key.text
    now = datetime.now(UTC)
    jobs = [job("acme", f"j-{api}-{day}-{n}", api=api, at=now - timedelta(days=day))
            for day in range(3) for i, api in enumerate(settings.jobmeter_apis) for n in range(i + day + 1)]
    response = await client.post("/v1/jobs/completed", json=jobs, headers=INGEST)
    assert response.status_code == 202, response.text
    await eventually(lambda: fetchval(settings, "SELECT coalesce(sum(jobs), 0) FROM ledger.hourly"),
                     lambda n: n == len(jobs))
    return str(key.json()["key"])


@pytest.fixture
async def console(settings: Settings) -> AsyncIterator[Console]:
    # Any price ids will do: stripe-mock checks the shape of a Checkout request, not that its prices exist.
    priced = settings.model_copy(update={"stripe_pro_price_id": "price_pro", "stripe_pro_annual_price_id": "price_year",
                                         "stripe_metered_overage_price_id": "price_overage"})
    app = create_app(priced, consumers=CONSUMERS)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield Console(url, client, await seed(settings, client))


@pytest.fixture
async def page(console: Console) -> AsyncIterator[tuple[object, BrowserLog]]:
    log = BrowserLog()
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(base_url=console.url)
            tab = await context.new_page()
            tab.on("console", lambda m: log.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            tab.on("pageerror", lambda e: log.errors.append(f"page error: {e}"))
            yield tab, log
        finally:
            await browser.close()


async def log_in(tab: Page) -> None:
    await tab.goto("/console/accounts")
    assert tab.url.endswith("/console/login")  # no session: the login form
    await tab.get_by_label("Admin token (JOBMETER_ADMIN_TOKEN)").fill(ADMIN_TOKEN)
    await tab.get_by_role("button", name="Log in").click()
    await tab.wait_for_url("**/console/accounts")


async def test_operator_journey(console: Console, page: tuple[Page, BrowserLog]) -> None:
    tab, log = page
    await log_in(tab)
    assert await tab.locator("h1").inner_text() == "Accounts"
    row = tab.locator("tr", has=tab.get_by_role("link", name="acme", exact=True))
    await playwright_api.expect(row).to_contain_text("active")

    # An account's usage: one bar per API surface and day, as the ledger has them.
    await tab.get_by_role("link", name="acme", exact=True).click()
    chart = tab.locator("svg#usage-chart")
    await playwright_api.expect(chart).to_be_visible()
    assert await chart.locator("rect.bar").count() == 3 * 4
    await playwright_api.expect(tab.locator("#usage-chart-desc")).to_contain_text("42 jobs over 7 days")
    await playwright_api.expect(tab.locator("#key-state")).to_have_text("active")

    # A final payment failure, signed and delivered through the real bridge: the keys are suspended.
    await tab.get_by_role("button", name="Simulate a final payment failure").click()
    await playwright_api.expect(tab.get_by_role("status")).to_contain_text("final payment failure was delivered")
    # The page follows the key store by itself: no reload.
    await playwright_api.expect(tab.locator("#key-state")).to_contain_text("suspended", timeout=20_000)
    refused = await console.client.get("/v1/keys/check", headers={"Authorization": f"Bearer {console.acme_key}"})
    assert refused.status_code == 403 and refused.json()["state"] == "suspended"

    # The webhook log shows it, and the live page picks it up by itself.
    await tab.get_by_role("link", name="Webhooks").click()
    entry = tab.locator("#live-webhooks tr", has_text="invoice.payment_failed")
    await playwright_api.expect(entry).to_have_count(1)
    await playwright_api.expect(entry).to_contain_text("acme")
    await tab.get_by_role("link", name="Live").click()
    await playwright_api.expect(tab.locator("#live-webhooks tr", has_text="invoice.payment_failed")).to_have_count(1)
    await playwright_api.expect(tab.locator("[data-live=jobs_total]")).to_have_text("42")

    # The customer pays: the keys come back.
    await tab.goto("/console/accounts/acme")
    await tab.get_by_role("button", name="Simulate a successful payment").click()
    await playwright_api.expect(tab.locator("#key-state")).to_have_text("active", timeout=20_000)

    # Checkout for the subscription opens a Stripe Checkout session.
    await tab.get_by_label("Plan").select_option("pro_annual")
    await tab.get_by_role("button", name="Open Checkout for the subscription").click()
    await playwright_api.expect(tab.locator("#checkout-url")).to_have_attribute("href", re.compile(r"^https?://"))

    # So does a PAYG top-up.
    await tab.goto("/console/accounts/payco")
    await tab.get_by_label("Top-up amount (minor units)").fill("2500")
    await tab.get_by_role("button", name="Open a PAYG top-up").click()
    link = tab.locator("#checkout-url")
    await playwright_api.expect(link).to_have_attribute("href", re.compile(r"^https?://"))
    assert await tab.evaluate(A11Y_PROBLEMS) == []
    assert log.errors == []


async def test_every_page_is_accessible_and_error_free(
    console: Console, page: tuple[Page, BrowserLog]
) -> None:
    tab, log = page
    problems: dict[str, list[str]] = {}
    await tab.goto("/console/login")
    problems["/console/login"] = await tab.evaluate(A11Y_PROBLEMS)
    await log_in(tab)
    for path in PAGES:
        response = await tab.goto(path)
        assert response is not None and response.status == 200, path
        csp = await response.header_value("content-security-policy")
        assert csp is not None and "script-src 'self'" in csp
        problems[path] = await tab.evaluate(A11Y_PROBLEMS)
    await tab.goto("/console/live")
    await playwright_api.expect(tab.locator("#live-status")).to_contain_text("Updated", timeout=5000)
    assert log.errors == []
    # The error panel too (the browser logs its 404 status as an error, which is the point of it).
    missing = await tab.goto("/console/accounts/nobody")
    assert missing is not None and missing.status == 404
    problems["/console/accounts/nobody"] = await tab.evaluate(A11Y_PROBLEMS)
    assert await tab.get_by_role("alert").inner_text() != ""
    assert {p: found for p, found in problems.items() if found} == {}
    assert [e for e in log.errors if "404" not in e] == []
