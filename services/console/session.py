"""Console sessions, CSRF tokens and the same-origin rule: pure functions over the admin token.

The cookie never holds the admin token: it holds a random session id and an expiry, signed with a key
derived from the token and JOBMETER_CONSOLE_SESSION_KEY, so changing either ends every session (the session
key is there to do just that without changing the token). The CSRF token is derived from
the session id with the same key: one per session, nothing stored server-side, compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

COOKIE = "jobmeter_console"
SESSION_SECONDS = 8 * 3600


@dataclass(frozen=True)
class Session:
    sid: str
    expires: int


def signing_key(admin_token: str, session_key: str = "") -> bytes:
    # Without a session key the derivation is the one before it existed, so setting none keeps every session.
    purpose = b"jobmeter console session v1" + (b":" + session_key.encode() if session_key else b"")
    return hmac.new(admin_token.encode(), purpose, hashlib.sha256).digest()


def _mac(key: bytes, purpose: str, payload: str) -> str:
    return hmac.new(key, f"{purpose}:{payload}".encode(), hashlib.sha256).hexdigest()


def new_session(key: bytes, *, now: float | None = None, seconds: int = SESSION_SECONDS) -> str:
    """A fresh signed cookie value: base64url(json) + "." + HMAC."""
    now = time.time() if now is None else now
    body = json.dumps({"sid": secrets.token_urlsafe(18), "exp": int(now) + seconds}, separators=(",", ":"))
    payload = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
    return f"{payload}.{_mac(key, 'session', payload)}"


def read_session(key: bytes, cookie: str | None, *, now: float | None = None) -> Session | None:
    """The session a cookie carries, or None when it is missing, forged, malformed or expired."""
    if not cookie or cookie.count(".") != 1:
        return None
    payload, mac = cookie.split(".")
    if not hmac.compare_digest(mac.encode(), _mac(key, "session", payload).encode()):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        session = Session(sid=str(data["sid"]), expires=int(data["exp"]))
    except (ValueError, KeyError, TypeError):
        return None
    now = time.time() if now is None else now
    return session if session.expires > now else None


def csrf_token(key: bytes, session: Session) -> str:
    return _mac(key, "csrf", session.sid)


def csrf_matches(key: bytes, session: Session, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(given.encode(), csrf_token(key, session).encode())


def token_matches(given: str, admin_token: str) -> bool:
    # Compare digests, so the comparison takes the same time whatever the lengths.
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(admin_token.encode()).digest())


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(own: str, origin: str | None, referer: str | None) -> bool:
    """A state-changing request must say where it came from, and it must be here. The Origin header wins;
    without it (older browsers, some same-origin navigations) the Referer's origin; with neither, refuse."""
    if origin is not None and origin != "null":
        return origin.lower() == own.lower()
    if origin == "null":
        return False
    return referer is not None and origin_of(referer) == own.lower()
