"""Configuration is checked when a process starts: production refuses published, short, unset or shared secrets;
every setting a fold or worker would need later is checked up front, with every problem named at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from jobmeter.settings import DEVELOPMENT_SECRETS, Settings
from services.engine.runtime import build_runtime
from services.engine.settings_check import ConfigurationError, problems
from services.http.auth import token_matches
from services.rapidapi.desk import RapidApiDesk
from services.rapidapi.middleware import RapidApiGateway

ROOT = Path(__file__).resolve().parents[2]
STRONG = {
    "jobmeter_ingest_token": SecretStr("i" * 32),
    "jobmeter_admin_token": SecretStr("a" * 32),
    "stripe_webhook_secret": SecretStr("whsec_" + "w" * 32),
    "rapidapi_proxy_secret": SecretStr("r" * 32),
    "jobmeter_webhook_signing_key": SecretStr("h" * 32),
}
SECRET_VARS = [name.upper() for name in DEVELOPMENT_SECRETS]


def production(**overrides: object) -> Settings:
    return Settings(jobmeter_env="production", **{**STRONG, **overrides})  # type: ignore[arg-type]


def test_production_is_the_default_and_has_no_secret_of_its_own() -> None:
    assert Settings.model_fields["jobmeter_env"].default == "production"
    for field in DEVELOPMENT_SECRETS:
        assert Settings.model_fields[field].default.get_secret_value() == ""


def test_development_fills_unset_secrets_with_the_published_values_only() -> None:
    settings = Settings(jobmeter_env="development", jobmeter_admin_token=SecretStr("mine-" * 5))
    assert settings.jobmeter_ingest_token.get_secret_value() == DEVELOPMENT_SECRETS["jobmeter_ingest_token"]
    assert settings.jobmeter_admin_token.get_secret_value() == "mine-" * 5
    assert problems(settings) == []


def test_production_with_strong_secrets_has_no_problem() -> None:
    assert problems(production()) == []


def test_production_names_every_unset_secret_in_one_message() -> None:
    settings = Settings(jobmeter_env="production")
    found = problems(settings)
    assert [p.split()[0] for p in found] == SECRET_VARS
    assert all("unset" in p and "jobmeter init" in p for p in found)


@pytest.mark.parametrize("field", list(DEVELOPMENT_SECRETS))
def test_production_refuses_each_published_value(field: str) -> None:
    for published in DEVELOPMENT_SECRETS.values():
        found = problems(production(**{field: SecretStr(published)}))
        assert found == [f"{field.upper()} is a published development value; set a secret of your own"]


@pytest.mark.parametrize("field", list(DEVELOPMENT_SECRETS))
def test_production_refuses_a_short_secret(field: str) -> None:
    assert problems(production(**{field: SecretStr("x" * 15)})) == [f"{field.upper()} is shorter than 16 characters"]
    assert problems(production(**{field: SecretStr("y" * 16)})) == []


def test_production_refuses_one_secret_used_twice() -> None:
    found = problems(production(jobmeter_admin_token=STRONG["jobmeter_ingest_token"]))
    assert found == ["JOBMETER_ADMIN_TOKEN equals JOBMETER_INGEST_TOKEN: a leak of one would give away the other"]


def test_every_api_surface_needs_a_positive_payg_price_and_every_price_an_api() -> None:
    settings = Settings(jobmeter_env="development", jobmeter_apis="alpha,beta,gamma,delta")
    found = problems(settings)
    assert any("no price for alpha, beta, gamma, delta" in p for p in found)
    assert any("prices classify, extract, summarize, translate, which JOBMETER_APIS does not name" in p for p in found)
    priced = Settings(jobmeter_env="development", jobmeter_payg_prices="extract=5,classify=0,translate=4,summarize=2")
    assert problems(priced) == ["JOBMETER_PAYG_PRICES: the price of classify must be positive"]
    twice = Settings(jobmeter_env="development", jobmeter_payg_prices="extract=5,extract=6")
    assert "JOBMETER_PAYG_PRICES: API surface 'extract' is priced twice" in problems(twice)


def test_a_threshold_at_or_over_the_recharge_amount_is_refused() -> None:
    settings = Settings(jobmeter_env="development", jobmeter_payg_threshold_minor=2000,
                        jobmeter_payg_recharge_minor=2000)
    assert problems(settings) == [
        "JOBMETER_PAYG_THRESHOLD_MINOR (2000) must be below JOBMETER_PAYG_RECHARGE_MINOR (2000), or one recharge "
        "would not lift a balance above the threshold"
    ]


def test_a_missing_smtp_ca_file_is_refused(tmp_path: Path) -> None:
    settings = Settings(jobmeter_env="development", jobmeter_smtp_ca_file=tmp_path / "absent.pem")
    assert problems(settings) == [f"JOBMETER_SMTP_CA_FILE {tmp_path / 'absent.pem'} is not a readable file"]


@pytest.mark.parametrize(("field", "value"), [
    ("kafka_bootstrap_servers", "kafka"), ("kafka_bootstrap_servers", "a:9092,b:port"),
    ("database_url", "mysql://x/y"), ("stripe_api_base", "stripe.com"), ("jobmeter_payg_return_url", "/billing"),
    ("jobmeter_smtp_url", "mail.example.com:587"), ("jobmeter_meter_transport", "v3"), ("jobmeter_apis", "A B"),
])
def test_settings_that_do_not_parse_are_refused_when_read(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        Settings(jobmeter_env="development", **{field: value})  # type: ignore[arg-type]


def test_no_runtime_is_built_on_a_bad_configuration() -> None:
    with pytest.raises(ConfigurationError) as refused:
        build_runtime(Settings(jobmeter_env="production", jobmeter_apis="alpha"), ["payg"])
    assert len(refused.value.problems) == 7  # five secrets, alpha unpriced, four prices for unknown surfaces
    assert str(refused.value).startswith("invalid configuration:\n  - JOBMETER_INGEST_TOKEN is unset")


def jobmeter(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator starts it: a fresh process, this environment, no .env or stack.env to read."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JOBMETER_", "STRIPE_", "RAPIDAPI_"))}
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args], env={**clean, "PYTHONPATH": str(ROOT), **env},
        cwd="/", capture_output=True, text=True, timeout=60, check=False,
    )


def test_a_production_process_refuses_to_start_and_names_every_problem() -> None:
    done = jobmeter("run", "http", "--port", "1", JOBMETER_APIS="alpha", JOBMETER_ADMIN_TOKEN="dev-admin-token")
    assert done.returncode == 2
    said = " ".join(done.stderr.split())
    assert "jobmeter will not start" in said
    for expected in ("JOBMETER_INGEST_TOKEN is unset", "JOBMETER_ADMIN_TOKEN is a published development value",
                     "STRIPE_WEBHOOK_SECRET is unset", "RAPIDAPI_PROXY_SECRET is unset",
                     "JOBMETER_PAYG_PRICES has no price for alpha"):
        assert expected in said
    assert "Traceback" not in done.stderr


def test_a_setting_that_does_not_parse_stops_the_process_with_its_name() -> None:
    done = jobmeter("accounts", "list", JOBMETER_ENV="development", JOBMETER_METER_TRANSPORT="v3",
                    JOBMETER_PARTITIONS="0")
    assert done.returncode == 2
    said = " ".join(done.stderr.split())
    assert "JOBMETER_METER_TRANSPORT: Input should be 'v1' or 'v2'" in said
    assert "JOBMETER_PARTITIONS: Input should be greater than or equal to 1" in said


def test_init_and_the_stack_commands_need_no_configuration() -> None:
    done = jobmeter("init", "--help")
    assert done.returncode == 0, done.stderr


def test_the_forecast_backtest_reads_no_configuration_but_an_account_forecast_does() -> None:
    scored = jobmeter("forecast", "--backtest", "--runs", "1", "--json")
    assert scored.returncode == 0, scored.stderr
    refused = jobmeter("forecast", "acme")
    assert refused.returncode == 2
    assert "JOBMETER_INGEST_TOKEN is unset" in " ".join(refused.stderr.split())


def test_an_unset_secret_opens_nothing_where_the_start_up_check_was_skipped() -> None:
    unset = SecretStr("")
    assert not token_matches("", unset)
    assert not token_matches("anything", unset)
    assert token_matches("i" * 32, STRONG["jobmeter_ingest_token"])
    settings = Settings(jobmeter_env="production")  # built by hand: no check ran
    with pytest.raises(ValueError, match="RAPIDAPI_PROXY_SECRET is unset"):
        RapidApiGateway(app=None, desk=RapidApiDesk(settings))  # type: ignore[arg-type]


def test_more_in_sync_replicas_than_copies_is_refused_at_start() -> None:
    assert problems(Settings(jobmeter_env="development", jobmeter_min_insync_replicas=3)) == []  # of 3 copies
    two_copies = Settings(jobmeter_env="development", jobmeter_replication_factor=2, jobmeter_min_insync_replicas=3)
    found = problems(two_copies)
    assert found == ["JOBMETER_MIN_INSYNC_REPLICAS (3) is above the replication factor: no write could succeed"]
