"""The one-word cells of the accounts table, case by case."""

from __future__ import annotations

from typing import Any

import pytest

from services.console.reads import Table, account_key_state, key_state, plan_status

ALL = {"keys": True, "standing": True, "subscriptions": True, "rapidapi": True, "payg": True}
NONE = dict.fromkeys(ALL, False)
NAMES = {"price_pro": "pro monthly"}


@pytest.mark.parametrize(
    ("row", "have", "expected"),
    [
        ({"model": "subscription", "sub_status": "active", "sub_price": "price_pro"}, ALL, "pro monthly · active"),
        ({"model": "subscription", "sub_status": "past_due", "sub_price": "price_x"}, ALL, "price_x · past_due"),
        ({"model": "subscription", "sub_status": None}, ALL, "no subscription"),
        ({"model": "subscription"}, NONE, "not available"),
        ({"model": "rapidapi", "rapidapi_plan": "PRO"}, ALL, "PRO"),
        ({"model": "rapidapi", "rapidapi_plan": None}, ALL, "plan not seen yet"),
        ({"model": "rapidapi"}, NONE, "not available"),
        ({"model": "payg", "balance_minor": 1250, "currency": "usd"}, ALL, "balance 1250 usd"),
        ({"model": "payg", "balance_minor": None, "currency": None}, ALL, "balance 0"),
        ({"model": "payg"}, NONE, "not available"),
    ],
)
def test_plan_status(row: dict[str, Any], have: dict[str, bool], expected: str) -> None:
    assert plan_status(row, have, NAMES) == expected


@pytest.mark.parametrize(
    ("row", "have_keys", "expected"),
    [
        ({"active_keys": 2, "suspended": False}, True, "active"),
        ({"active_keys": 2, "suspended": None}, True, "active"),
        ({"active_keys": 2, "suspended": True}, True, "suspended"),
        ({"active_keys": 0, "suspended": True}, True, "suspended"),
        ({"active_keys": 0, "suspended": None}, True, "no keys"),
        ({}, False, "not available"),
    ],
)
def test_key_state(row: dict[str, Any], have_keys: bool, expected: str) -> None:
    assert key_state(row, have_keys) == expected


@pytest.mark.parametrize(
    ("keys", "suspension", "expected"),
    [
        (Table(True, [{"state": "active"}]), None, "active"),
        (Table(True, [{"state": "revoked"}, {"state": "active"}]), {"suspended": False, "reason": "paid"}, "active"),
        (Table(True, [{"state": "active"}]), {"suspended": True, "reason": "final payment failed"},
         "suspended: final payment failed"),
        (Table(True, [{"state": "revoked"}]), None, "no keys"),
        (Table(True, []), None, "no keys"),
        (Table.missing("the key store"), None, "not available"),
    ],
)
def test_account_key_state(keys: Table, suspension: dict[str, Any] | None, expected: str) -> None:
    assert account_key_state(keys, suspension) == expected
