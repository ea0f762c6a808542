"""`jobmeter init` writes a deployment's own secrets, strong enough for production, readable by its owner only;
`--rotate` renews one and leaves the rest."""

from __future__ import annotations

import stat
from pathlib import Path

from dotenv import dotenv_values
from typer.testing import CliRunner

from jobmeter.settings import Settings
from services.cli.init import ISSUED, PLACEHOLDERS
from services.cli.main import app
from services.engine.settings_check import problems

runner = CliRunner()


def test_init_writes_private_fresh_secrets_that_production_accepts(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    result = runner.invoke(app, ["init", "--path", str(path)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = dotenv_values(path)
    assert values["JOBMETER_ENV"] == "production"
    assert set(ISSUED) | set(PLACEHOLDERS) <= set(values)
    assert len({values[name] for name in (*ISSUED, *PLACEHOLDERS)}) == len(ISSUED) + len(PLACEHOLDERS)
    assert problems(Settings(_env_file=str(path), jobmeter_env="production")) == []
    runner.invoke(app, ["init", "--path", str(tmp_path / "again")])  # another deployment, other secrets
    assert dotenv_values(tmp_path / "again")["JOBMETER_ADMIN_TOKEN"] != values["JOBMETER_ADMIN_TOKEN"]


def test_init_keeps_an_existing_file_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("JOBMETER_ADMIN_TOKEN=keep-this-one-please\n")
    refused = runner.invoke(app, ["init", "--path", str(path)])
    assert refused.exit_code == 1
    assert path.read_text() == "JOBMETER_ADMIN_TOKEN=keep-this-one-please\n"
    forced = runner.invoke(app, ["init", "--path", str(path), "--force"])
    assert forced.exit_code == 0
    assert dotenv_values(path)["JOBMETER_ADMIN_TOKEN"] != "keep-this-one-please"


def test_rotate_renews_only_the_named_secrets_and_keeps_every_other_line(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    runner.invoke(app, ["init", "--path", str(path)])
    path.write_text(path.read_text() + "# mine\nLOG_LEVEL=DEBUG\n")
    before = dotenv_values(path)
    result = runner.invoke(app, ["init", "--path", str(path), "--rotate", "JOBMETER_CONSOLE_SESSION_KEY",
                                 "--rotate", "JOBMETER_ADMIN_TOKEN"])
    assert result.exit_code == 0, result.output
    after = dotenv_values(path)
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {"JOBMETER_CONSOLE_SESSION_KEY", "JOBMETER_ADMIN_TOKEN"}
    assert "# mine" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rotate_refuses_secrets_that_others_issue(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    runner.invoke(app, ["init", "--path", str(path)])
    before = path.read_text()
    result = runner.invoke(app, ["init", "--path", str(path), "--rotate", "STRIPE_WEBHOOK_SECRET"])
    assert result.exit_code == 2
    assert path.read_text() == before
