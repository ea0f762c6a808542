"""The console's session, CSRF and same-origin rules, case by case."""

from __future__ import annotations

import pytest

from services.console.session import (
    Session,
    csrf_matches,
    csrf_token,
    new_session,
    read_session,
    same_origin,
    signing_key,
    token_matches,
)

KEY = signing_key("dev-admin-token")
NOW = 1_800_000_000.0


def test_a_session_reads_back_until_it_expires() -> None:
    cookie = new_session(KEY, now=NOW, seconds=60)
    session = read_session(KEY, cookie, now=NOW + 59)
    assert session is not None and session.expires == int(NOW) + 60
    assert read_session(KEY, cookie, now=NOW + 60) is None
    assert "dev-admin-token" not in cookie


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: None,
        lambda c: "",
        lambda c: c + "0",
        lambda c: c.replace(".", ".x", 1),
        lambda c: "A" + c,
        lambda c: c.split(".")[0],
        lambda c: c + ".extra",
        lambda c: "!!!." + c.split(".")[1],
    ],
)
def test_tampered_cookies_are_no_session(tamper: object) -> None:
    cookie = new_session(KEY, now=NOW)
    assert read_session(KEY, tamper(cookie), now=NOW) is None  # type: ignore[operator]


def test_another_admin_token_ends_every_session() -> None:
    cookie = new_session(KEY, now=NOW)
    assert read_session(signing_key("rotated"), cookie, now=NOW) is None


def test_another_session_key_ends_every_session_and_none_keeps_todays() -> None:
    keyed = signing_key("dev-admin-token", "session-key-1")
    cookie = new_session(keyed, now=NOW)
    assert read_session(keyed, cookie, now=NOW) is not None
    assert read_session(signing_key("dev-admin-token", "session-key-2"), cookie, now=NOW) is None
    assert read_session(KEY, cookie, now=NOW) is None
    # No session key is the derivation from before there was one: setting none logs nobody out.
    assert signing_key("dev-admin-token", "") == KEY
    assert KEY.hex() == "97524041fa7a8502dcc06915d999819d0e727eb68bf14f2fce29d24021538f34"  # as before


def test_csrf_tokens_are_per_session() -> None:
    one, two = Session("a", 0), Session("b", 0)
    assert csrf_matches(KEY, one, csrf_token(KEY, one))
    assert not csrf_matches(KEY, one, csrf_token(KEY, two))
    assert not csrf_matches(KEY, one, None)
    assert not csrf_matches(KEY, one, "")
    assert not csrf_matches(signing_key("other"), one, csrf_token(KEY, one))


@pytest.mark.parametrize(
    ("origin", "referer", "allowed"),
    [
        ("http://console.test:8080", None, True),
        ("HTTP://Console.test:8080", None, True),
        ("http://console.test:8081", None, False),
        ("https://console.test:8080", None, False),
        ("https://evil.example", "http://console.test:8080/console", False),  # Origin wins
        ("null", "http://console.test:8080/console", False),  # sandboxed or opaque origins
        (None, "http://console.test:8080/console/accounts?x=1", True),
        (None, "http://console.test:8080.evil.example/console", False),
        (None, "http://evil.example/?http://console.test:8080", False),
        (None, "/console/accounts", False),
        (None, None, False),
    ],
)
def test_same_origin(origin: str | None, referer: str | None, allowed: bool) -> None:
    assert same_origin("http://console.test:8080", origin, referer) is allowed


@pytest.mark.parametrize(("given", "ok"), [("dev-admin-token", True), ("dev-admin-toke", False), ("", False),
                                          ("dev-admin-token ", False)])
def test_admin_token(given: str, ok: bool) -> None:
    assert token_matches(given, "dev-admin-token") is ok
