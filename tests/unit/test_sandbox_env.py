"""The environment a sandbox's child processes get (services/devtools/sandbox.py `service_env`): a projection kept in
a database of its own (JOBMETER_<NAME>_DATABASE_URL) is folded by the child where the parent reads it."""

from __future__ import annotations

import os

import pytest

from jobmeter.settings import Settings
from services.devtools.sandbox import service_env
from services.engine.runtime import PROJECTION_SERVICES

BASE = "postgresql://postgres@127.0.0.1:5432/sandbox_x"
OWN = {"ledger": "postgresql://postgres@db-ledger:5432/ledger", "key-lifecycle": "postgresql://db-keys/lifecycle"}


def test_each_projections_own_database_reaches_the_child_and_no_other(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(jobmeter_env="development", database_url=BASE).model_copy(
        update={f"jobmeter_{name.replace('-', '_')}_database_url": url for name, url in OWN.items()})
    # The parent's environment names a database for the meter that these settings do not use: not passed on.
    monkeypatch.setenv("JOBMETER_METER_DATABASE_URL", "postgresql://elsewhere/meter")
    env = service_env(settings)
    assert env["JOBMETER_LEDGER_DATABASE_URL"] == OWN["ledger"]
    assert env["JOBMETER_KEY_LIFECYCLE_DATABASE_URL"] == OWN["key-lifecycle"]
    assert "JOBMETER_METER_DATABASE_URL" not in env
    # The child, reading that environment, puts every projection where the parent does.
    for key in [k for k in os.environ if k not in env]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    child = Settings(_env_file=None)
    assert {name: child.database_url_for(name) for name in PROJECTION_SERVICES} == {
        name: OWN.get(name, BASE) for name in PROJECTION_SERVICES}
