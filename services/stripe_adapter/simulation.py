"""Simulated Stripe events: how they are told apart from Stripe's own, and when there may be none at all.

A simulated event (the console's buttons, `jobmeter simulate webhook`) is signed with the deployment's real
webhook secret, so the bridge and dunning take it as Stripe's word. Against a live Stripe account that would
suspend or restore a paying customer's keys on a made-up payment: with a live STRIPE_SECRET_KEY simulation is
off, and the bridge takes live events only (`webhooks.receive`).

Simulated events carry `"livemode": false` (`fixtures.build_event`) and an event id with one of
SIMULATED_PREFIXES, which the webhook log's listing marks. A real Stripe id is `evt_` and base62 characters,
so an underscore after the prefix's word (`evt_cli_…`) can never start one.
"""

from __future__ import annotations

import secrets

LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")  # secret and restricted keys of a live account

CONSOLE_PREFIX = "evt_console"  # the console's deliveries (older log rows carry it too)
CLI_PREFIX = "evt_cli_"  # `jobmeter simulate webhook`
SIMULATED_PREFIXES = (CONSOLE_PREFIX, CLI_PREFIX)


def is_live_key(secret: str) -> bool:
    """Is this Stripe API key one of a live account (real money), not of test mode?"""
    return secret.startswith(LIVE_KEY_PREFIXES)


def refusal(stripe_secret_key: str) -> str | None:
    """Why simulation is off in a deployment with this Stripe key; None when it may simulate."""
    if not is_live_key(stripe_secret_key):
        return None
    return ("Simulation is off: STRIPE_SECRET_KEY is a live key, and a simulated event signed with this "
            "deployment's webhook secret would be taken as Stripe's own, suspending or restoring real customers' "
            "keys. Simulate with a test key (sk_test_…).")


def simulated_event_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(10)}"
