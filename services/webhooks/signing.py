"""Endpoint secrets and the `Jobmeter-Signature` header. Pure.

An endpoint's secret is HMAC-SHA256(the server's JOBMETER_WEBHOOK_SIGNING_KEY, its endpoint id): derived where it
is needed (shown once by `jobmeter webhooks add`, used by the sender), never stored and never on the bus. Rotating
the server key therefore changes every endpoint's secret at once; one endpoint's secret changes by adding a new
endpoint and removing the old one.
"""

from __future__ import annotations

import hashlib
import hmac

SECRET_PREFIX = "whsec_"  # noqa: S105 - the marker every endpoint secret starts with, not a secret
HEADER = "Jobmeter-Signature"


def endpoint_secret(signing_key: str, endpoint_id: str) -> str:
    if not signing_key:
        raise ValueError("JOBMETER_WEBHOOK_SIGNING_KEY is unset: no endpoint secret can be derived")
    mac = hmac.new(signing_key.encode(), f"webhook-endpoint:{endpoint_id}".encode(), hashlib.sha256)
    return SECRET_PREFIX + mac.hexdigest()


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The header's value: `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: int, tolerance: int = 300) -> bool:
    """What a receiver checks (docs/webhooks.md has the same in a few lines): a `v1` that matches, at a time within
    `tolerance` seconds of `now`, so a captured delivery cannot be replayed later."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit() or abs(now - int(stamps[0])) > tolerance:
        return False
    expected = signature(secret, body, int(stamps[0])).split("v1=", 1)[1]
    return any(k == "v1" and hmac.compare_digest(v, expected) for k, v in parts)
