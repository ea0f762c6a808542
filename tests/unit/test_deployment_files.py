"""The files users deploy from must stay true to the code: every setting documented, every service deployed."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from jobmeter.settings import Settings
from services.cli.run import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_setting() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    expected = {name.upper() for name in Settings.model_fields}
    assert expected - documented == set(), "add these to .env.example"
    stack_only = {"JOBMETER_STATE_DIR", "JOBMETER_CACHE_DIR"}  # read by `jobmeter stack`, not by Settings
    assert documented - expected - stack_only == set(), "these are in .env.example but not in Settings"


def test_compose_runs_every_consumer_and_only_known_services() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    commands = {
        name: spec["command"] for name, spec in compose["services"].items() if spec.get("image") == "jobmeter:local"
        or "build" in spec or "<<" in spec
    }
    run_targets = {cmd[1] for cmd in commands.values() if cmd[:1] == ["run"]}
    assert run_targets <= set(SERVICES)
    assert set(SERVICES) - {"all"} <= run_targets, "every service needs a container in docker-compose.yml"
