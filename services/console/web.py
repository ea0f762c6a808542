"""The console's HTTP plumbing: its door (sessions, same origin, CSRF), rendering its pages, and turning the
backing services' failures into a panel that says which one and why.

The routes in `services/http/console.py` use these; nothing here knows what a page shows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import stripe
import structlog
from aiokafka.errors import KafkaError
from fastapi import Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobmeter.settings import Settings
from projections.db import Connections
from services.console.actions import Rebuilds
from services.console.session import COOKIE, Session, csrf_matches, csrf_token, read_session, same_origin, signing_key

log = structlog.get_logger(__name__)

HERE = Path(__file__).resolve().parent
STATIC = {  # served by name only: nothing else on disk is reachable through /console/static
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
NOTICES = {  # ?notice= keys: fixed texts only, so a crafted link cannot put words in the console's mouth
    "failure-sent": "A final payment failure was delivered through the webhook bridge.",
    "recovery-sent": "A successful payment was delivered through the webhook bridge.",
    "rebuild-started": "The rebuild started; its progress shows below.",
    "redrive-applied": "The dead letter was applied again through the consumer that refused it; the outcome is kept "
                       "beside it.",
    "redrive-refused": "The consumer refused the dead letter again: its row says why.",
}
MAX_FORM_BYTES = 16 * 1024  # applied by services.http.limits to every request under /console

env = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True), trim_blocks=True,
    lstrip_blocks=True,
)


def show(value: Any) -> str:
    """One cell of a table: times to the second in UTC, nothing as a dash."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


env.filters["show"] = show


class NeedsLogin(Exception):  # a signal, not a failure
    """No valid session: pages go to the login form, scripts get 401."""


class Refused(Exception):
    """A request the console will not act on (cross-origin, bad CSRF token, bad form): 403 or 400."""

    def __init__(self, status: int, reason: str, title: str = "Refused") -> None:
        super().__init__(reason)
        self.status = status
        self.title = title


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/console/api/") or "application/json" in request.headers.get("accept", "")


def secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def unreachable(error: BaseException) -> tuple[str, str]:
    """Which service failed, and a sentence about it, for the error panel."""
    text = str(error) or type(error).__name__
    if isinstance(error, asyncpg.PostgresError | asyncpg.InterfaceError) or "postgres" in type(error).__module__:
        return "Postgres", f"the database could not answer: {text}"
    if isinstance(error, KafkaError):
        return "Kafka", f"the event log could not be reached: {text}"
    if isinstance(error, stripe.StripeError):
        said = error.user_message or text
        return "Stripe", f"Stripe could not be reached or refused the call: {said}"
    if isinstance(error, ConnectionError | OSError | TimeoutError):
        return "a backing service", f"a connection failed: {text}"
    if isinstance(error, RuntimeError) and "not open" in text:
        return "the engine", "the HTTP app's resources are not open (is it starting or stopping?)"
    return "the console", f"{type(error).__name__}: {text}"


class ConsoleRoute(APIRoute):
    """Turns the console's signals and the backing services' failures into pages, with security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response = await handler(request)
            except NeedsLogin:
                if wants_json(request):
                    response = JSONResponse({"detail": "log in to the console first"}, status_code=401)
                else:
                    response = RedirectResponse("/console/login", status_code=303)
            except Refused as error:
                response = error_page(request, error.status, error.title, str(error))
            except Unavailable as error:
                log.warning("console: a service is unavailable", path=request.url.path, service=error.service,
                            reason=str(error))
                response = error_page(request, 503, f"{error.service} is unavailable", str(error))
            except StarletteHTTPException:
                raise
            except Exception as error:  # the operator gets the reason, the log gets the trace
                service, reason = unreachable(error)
                log.warning("console request failed", path=request.url.path, service=service, exc_info=True)
                response = error_page(request, 503, f"{service} is unavailable", reason)
            return secure(response)

        return guarded




# -- sessions --------------------------------------------------------------------------------------------------

def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def key_of(request: Request) -> bytes:
    settings = settings_of(request)
    return signing_key(settings.jobmeter_admin_token.get_secret_value(),
                       settings.jobmeter_console_session_key.get_secret_value())


def session_of(request: Request) -> Session:
    session = read_session(key_of(request), request.cookies.get(COOKIE))
    if session is None:
        raise NeedsLogin()
    return session


def own_origin(request: Request) -> str:
    """Where the console is served from: JOBMETER_CONSOLE_ORIGIN behind a proxy, else as the request arrived."""
    return settings_of(request).jobmeter_console_origin or f"{request.url.scheme}://{request.url.netloc}"


def check_origin(request: Request) -> None:
    if not same_origin(own_origin(request), request.headers.get("origin"), request.headers.get("referer")):
        raise Refused(403, "This request did not come from the console's own pages (Origin/Referer check).")


async def form(request: Request) -> dict[str, str]:
    body = await request.body()
    if not body:
        return {}
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise Refused(400, "Expected a form (application/x-www-form-urlencoded).")
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


async def guarded_form(request: Request) -> tuple[Session, dict[str, str]]:
    """What every action checks first: same origin, a session, and that session's CSRF token."""
    check_origin(request)
    session = session_of(request)
    fields = await form(request)
    given = fields.get("csrf") or request.headers.get("x-csrf-token")
    if not csrf_matches(key_of(request), session, given):
        raise Refused(403, "The form's CSRF token is missing or wrong; reload the page and try again.")
    return session, fields


# -- rendering -------------------------------------------------------------------------------------------------

NAV = (
    ("accounts", "Accounts"),
    ("stripe", "Stripe reports"),
    ("payg", "PAYG"),
    ("webhooks", "Webhooks"),
    ("live", "Live"),
    ("rapidapi", "RapidAPI"),
    ("projections", "Projections"),
    ("attention", "Attention"),
    ("deadletters", "Dead letters"),
)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    try:
        key = key_of(request)
        session = read_session(key, request.cookies.get(COOKIE))
        csrf = csrf_token(key, session) if session else ""
    except Exception:  # the error page must render even when reading the session failed
        session, csrf = None, ""
    notice = NOTICES.get(request.query_params.get("notice", ""))
    # Development fills every unset secret with a published value: anyone could log in.
    published = settings_of(request).jobmeter_env == "development"
    html = env.get_template(template).render(
        nav=NAV, csrf=csrf, logged_in=session is not None, notice=notice, now=datetime.now(UTC),
        published_secrets=published, **context,
    )
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, title: str, reason: str) -> Response:
    if wants_json(request):
        return JSONResponse({"detail": reason}, status_code=status)
    return render(request, "error.html", status=status, title=title, reason=reason, section="")


def rebuilds(request: Request) -> Rebuilds:
    state = request.app.state
    if getattr(state, "console_rebuilds", None) is None:
        state.console_rebuilds = Rebuilds()
    found: Rebuilds = state.console_rebuilds
    return found


class Unavailable(Exception):
    """A backing service did not answer; `service` names it for the error panel."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(reason)
        self.service = service


def store_pool(request: Request) -> asyncpg.Pool:
    """DATABASE_URL's pool: the areas' own stores (the Stripe webhook log), which are no projection's."""
    pool: asyncpg.Pool = request.app.state.runtime.res.pool
    return pool


@asynccontextmanager
async def database(request: Request) -> AsyncIterator[Connections]:
    """Connections to the databases the page reads: `await db(projection)` is that projection's (one connection
    per database, taken on first use). A refused or dropped connection is Postgres being unavailable."""
    res = request.app.state.runtime.res
    try:
        async with res.connections(timeout=5) as db:
            yield db
    except (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.CannotConnectNowError) as error:
        reason = str(error) or type(error).__name__
        raise Unavailable("Postgres", f"the database could not be reached: {reason}") from error
