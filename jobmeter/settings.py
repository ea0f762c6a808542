"""One settings object for every process, read from the environment.

Precedence, lowest first: defaults, `.env`, the stack's connection file (`.jobmeter/stack.env`, written by
`jobmeter stack up`), then real environment variables. Every variable is listed in `.env.example`.

`JOBMETER_ENV` is `production` unless set: the shared secrets then have no default at all, and
`jobmeter.settings_check` refuses to start a process without strong ones. Only `development` (the local stack,
`make demo`, `make test`) fills unset secrets with the published values in `DEVELOPMENT_SECRETS`.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_APIS = ("extract", "classify", "translate", "summarize")

# Published in this repository, so known to everyone: used only in development, refused in production.
DEVELOPMENT_SECRETS = {
    "jobmeter_ingest_token": "dev-ingest-token",
    "jobmeter_admin_token": "dev-admin-token",
    "stripe_webhook_secret": "whsec_dev",
    "rapidapi_proxy_secret": "dev-rapidapi-proxy-secret",
    "jobmeter_webhook_signing_key": "dev-webhook-signing-key",
}


def state_dir() -> Path:
    """Where the local stack keeps its data, logs and connection file (ignored by git)."""
    return Path(os.environ.get("JOBMETER_STATE_DIR", ".jobmeter")).resolve()


def cache_dir() -> Path:
    """Downloads shared by every clone on this machine (Kafka jars, stripe-mock)."""
    default = Path.home() / ".cache" / "jobmeter"
    return Path(os.environ.get("JOBMETER_CACHE_DIR", str(default))).resolve()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=(".env", str(state_dir() / "stack.env")),
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        env_ignore_empty=True,  # `STRIPE_METER_ID=` in a .env means unset, as in .env.example
    )

    # production: strong secrets required at start; development: the published ones fill what is unset
    jobmeter_env: Literal["production", "development"] = "production"

    # Connections
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/jobmeter"
    # One projection's own Postgres (its tables, positions, migrations, replay and readers) in place of DATABASE_URL:
    # JOBMETER_<NAME>_DATABASE_URL, NAME its consumer name upper-cased ('-' as '_'); `database_url_for` reads them
    jobmeter_ledger_database_url: str | None = None
    jobmeter_accounts_database_url: str | None = None
    jobmeter_keys_database_url: str | None = None
    jobmeter_key_lifecycle_database_url: str | None = None
    jobmeter_meter_database_url: str | None = None
    jobmeter_subscriptions_database_url: str | None = None
    jobmeter_normalizer_database_url: str | None = None
    jobmeter_payg_database_url: str | None = None
    jobmeter_rapidapi_database_url: str | None = None
    jobmeter_caps_database_url: str | None = None
    jobmeter_webhooks_database_url: str | None = None
    stripe_api_base: str = "http://127.0.0.1:12111"

    # The event log
    jobmeter_topic_prefix: str = ""
    jobmeter_partitions: int = Field(default=6, ge=1)
    jobmeter_apis: Annotated[tuple[str, ...], NoDecode] = DEFAULT_APIS
    # Copies of each partition of the topics jobmeter creates (unset: 3, or every broker when the cluster has
    # fewer) and the copies a write needs before it is acknowledged (unset: 2 from three copies up, else 1)
    jobmeter_replication_factor: int | None = Field(default=None, ge=1)
    jobmeter_min_insync_replicas: int | None = Field(default=None, ge=1)

    # HTTP
    # Shared secrets: empty means unset (see DEVELOPMENT_SECRETS and jobmeter.settings_check)
    jobmeter_ingest_token: SecretStr = SecretStr("")
    jobmeter_admin_token: SecretStr = SecretStr("")
    jobmeter_ingest_max_batch: int = Field(default=1000, ge=1)
    # How long ingest waits for Kafka before answering 503 (nothing acknowledged, so the client retries).
    jobmeter_ingest_publish_timeout_seconds: float = Field(default=10.0, gt=0)
    # Admission: past this many jobs not yet folded by the furthest-behind consumer of the jobs topic, ingest
    # answers 503 with Retry-After instead of taking more (0: never; services.ledger.admission). The lag is read
    # every JOBMETER_INGEST_LAG_INTERVAL_SECONDS, in records, and counted in jobs at the jobs per record this
    # ingest process published over the last interval.
    jobmeter_ingest_max_lag: int = Field(default=0, ge=0)
    jobmeter_ingest_lag_interval_seconds: float = Field(default=0.5, gt=0)
    # How long ingest remembers a job to answer "duplicate" to a retry (the ledger counts it once regardless),
    # how long the webhook log keeps a Stripe event (Stripe keeps events 30 days), and how often the HTTP app
    # prunes what is older (services.platform.retention).
    jobmeter_ingest_receipt_days: int = Field(default=35, ge=1)
    jobmeter_webhook_log_days: int = Field(default=90, ge=31)
    jobmeter_retention_interval_seconds: float = Field(default=3600.0, gt=0)
    jobmeter_http_port: int = 8080
    # The console's public origin (https://billing.example.com) when a proxy in front changes scheme or host;
    # unset = the origin requests arrive with. Actions must come from it; https also marks the cookie Secure.
    jobmeter_console_origin: str | None = Field(default=None, pattern=r"^https?://[^/\s]+$")
    # Mixed into the console's session signing key: changing it (`jobmeter init --rotate
    # JOBMETER_CONSOLE_SESSION_KEY`, then a restart) ends every console session, as changing the admin token does.
    jobmeter_console_session_key: SecretStr = SecretStr("")
    # Console login throttle, per client address: this many failed attempts, refilled over the window; once they
    # are spent, every attempt from that address answers 429 with Retry-After.
    jobmeter_login_max_failures: int = Field(default=5, ge=1)
    jobmeter_login_window_seconds: float = Field(default=60.0, gt=0)

    # Consumers. Large batches when a consumer is behind (a replay, a backlog): a fold's fixed costs are per
    # batch, and a batch spanning more partitions gives side-by-side folds more to share. Measured by bench ledger.
    jobmeter_batch_max_records: int = Field(default=10000, ge=1)
    # This process's stable name among the instances of its consumers (static membership, KIP-345): a restart
    # within the session timeout takes its partitions back without rebalancing the group. Unset: dynamic members.
    jobmeter_instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,100}$")
    jobmeter_batch_timeout_ms: int = Field(default=200, ge=1)

    # Stripe
    stripe_secret_key: SecretStr = SecretStr("sk_test_123")
    stripe_webhook_secret: SecretStr = SecretStr("")
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1)  # older signed deliveries are refused
    stripe_webhook_publish_timeout_seconds: float = Field(default=10.0, gt=0)  # then 503, and Stripe retries

    # Key lifecycle notifications: smtp://user:pass@host:port (STARTTLS, required when a password is set) or
    # smtps://… (TLS from the start); certificates are always verified, against this CA file when set (a private
    # server's CA) or the system's. Unset URL = a log sink.
    jobmeter_smtp_url: SecretStr | None = None
    jobmeter_smtp_ca_file: Path | None = None
    jobmeter_notify_from: str = "billing@jobmeter.invalid"

    # Stripe catalog (`jobmeter stripe sync` creates what is missing and prints the IDs to put here)
    stripe_pro_price_id: str | None = None
    stripe_pro_annual_price_id: str | None = None
    stripe_metered_overage_price_id: str | None = None
    stripe_payg_topup_price_id: str | None = None
    stripe_meter_id: str | None = None
    stripe_meter_event_name: str = "jobmeter_jobs"
    next_public_stripe_payment_link_subscription: str | None = None
    stripe_portal_return_url: str = "http://localhost:8080/billing"
    jobmeter_plan_included_jobs: int = Field(default=10_000, ge=0)
    # Stripe meter reporting: window width, how long after its end a window stays open for stragglers,
    # and this process's request budget (Stripe's documented live-mode limit is 1,000 meter-event calls/s)
    jobmeter_meter_window_seconds: int = Field(default=60, ge=1, le=3600)
    jobmeter_meter_lateness_seconds: float = Field(default=5.0, ge=0)
    jobmeter_stripe_requests_per_second: float = Field(default=100.0, gt=0, le=1000)
    jobmeter_meter_send_concurrency: int = Field(default=16, ge=1)
    jobmeter_meter_poll_seconds: float = Field(default=1.0, gt=0)
    # How long a claimed report is left to the sender that claimed it: a sender killed mid-send delays the reports
    # it held by this much (then another sends the same identifier and value again, which Stripe drops)
    jobmeter_meter_lease_seconds: float = Field(default=300.0, gt=0)
    jobmeter_stripe_timeout_seconds: float = Field(default=20.0, gt=0)
    # v1: one meter event a request; v2: Stripe's meter event stream, 100 events a request (high volume)
    jobmeter_meter_transport: Literal["v1", "v2"] = "v1"
    stripe_meter_events_base: str = "https://meter-events.stripe.com"

    # RapidAPI (provider side): the proxy secret from the provider dashboard, the billing object (custom quota)
    # jobs are declared in, and how far its numbers may differ from ours: "N" jobs, "P%" of the larger, or both
    # ("2,0.5%": within either)
    rapidapi_proxy_secret: SecretStr = SecretStr("")
    rapidapi_billing_object: str = Field(default="jobs", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9 _.-]+$")
    rapidapi_reconcile_tolerance: str = Field(
        default="0", pattern=r"^\s*([0-9]+|[0-9]+(\.[0-9]+)?%)\s*(,\s*([0-9]+|[0-9]+(\.[0-9]+)?%)\s*)?$"
    )
    # The reconciler beside the `rapidapi` consumer: how often it compares months that have an export, once no new
    # export row has been logged for `settle` seconds
    rapidapi_reconcile_interval_seconds: float = Field(default=60.0, gt=0)
    rapidapi_reconcile_settle_seconds: float = Field(default=30.0, ge=0)

    # Dunning: whether a paused subscription suspends its keys, and whether an invoice marked uncollectible is
    # written off (keys work again) rather than still owed (keys stay suspended until it is paid or voided)
    jobmeter_dunning_suspend_paused: bool = True
    jobmeter_dunning_write_off_uncollectible: bool = False

    # Pay-as-you-go: the price of one job per API surface in minor units of one currency ("api=minor,…"), the
    # defaults of an account not yet configured, how far below zero a balance may go before its keys are
    # suspended, and how failed recharges back off (base * 2^(n-1), capped) until auto-recharge turns off
    jobmeter_payg_prices: str = Field(
        default="extract=5,classify=3,translate=4,summarize=2",
        pattern=r"^\s*[a-z][a-z0-9_-]*\s*=\s*[0-9]+\s*(,\s*[a-z][a-z0-9_-]*\s*=\s*[0-9]+\s*)*,?\s*$",
    )
    jobmeter_payg_currency: str = Field(default="usd", pattern=r"^[a-z]{3}$")
    jobmeter_payg_threshold_minor: int = Field(default=500, ge=0)
    jobmeter_payg_recharge_minor: int = Field(default=2000, gt=0)
    jobmeter_payg_allowance_minor: int = Field(default=0, ge=0)
    jobmeter_payg_max_failures: int = Field(default=3, ge=1)
    jobmeter_payg_backoff_seconds: float = Field(default=300.0, ge=0)
    jobmeter_payg_backoff_max_seconds: float = Field(default=86_400.0, ge=0)
    jobmeter_payg_poll_seconds: float = Field(default=1.0, gt=0)
    # How long a recharge (or a card lookup) a worker claimed is left to it: one killed mid-send delays it by this
    # much, then another sends it again under the same idempotency key
    jobmeter_payg_lease_seconds: float = Field(default=120.0, gt=0)
    # A recharge sent this long ago with no webhook settling it is looked up at Stripe (and again as often)
    jobmeter_payg_settle_after_seconds: float = Field(default=600.0, gt=0)
    # An unsent recharge (Stripe failing, timing out, refusing our key) ends failed (`unreachable`) this long after
    # the fold recorded it, so the fold's back-off and next recharge take over.
    jobmeter_payg_recharge_give_up_seconds: float = Field(default=3600.0, gt=0)
    # The wait before sending again after a transient Stripe error (5xx, timeout); doubled per attempt
    jobmeter_payg_recharge_retry_seconds: float = Field(default=30.0, gt=0)
    # The longest that doubled wait gets: after a long outage, every unsent recharge is tried again within it
    jobmeter_payg_recharge_retry_max_seconds: float = Field(default=600.0, gt=0)
    jobmeter_payg_return_url: str = "http://localhost:8080/billing/payg"
    next_public_stripe_payment_link_payg: str | None = None

    # Outgoing webhooks: each endpoint's signing secret is HMAC(this key, the endpoint id), so no secret is stored or
    # travels (changing the key changes every endpoint's secret); how long one POST may take; a factor on every
    # retry delay (1: seconds to a minute at first, about three days in all; tests shrink it); the sender's idle poll
    jobmeter_webhook_signing_key: SecretStr = SecretStr("")
    jobmeter_webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    jobmeter_webhook_retry_scale: float = Field(default=1.0, gt=0, le=1)
    jobmeter_webhook_poll_seconds: float = Field(default=1.0, gt=0)

    # Usage caps: the plan's default hard cap on an account's jobs per period where it set none of its own (0: none),
    # the alert thresholds in percent of every cap ("80,100"), and how often the cap clock looks for capped periods
    # that are over
    jobmeter_cap_default_jobs: int = Field(default=0, ge=0)
    jobmeter_usage_alert_percents: str = Field(default="80,100", pattern=r"^\s*[0-9]{1,4}\s*(,\s*[0-9]{1,4}\s*)*$")
    jobmeter_cap_clock_seconds: float = Field(default=30.0, gt=0)

    log_level: str = "INFO"

    @field_validator("jobmeter_apis", mode="before")
    @classmethod
    def _split_apis(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("jobmeter_apis")
    @classmethod
    def _apis_present(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("JOBMETER_APIS must name at least one API surface")
        for api in value:
            if not re.fullmatch(r"[a-z][a-z0-9_-]*", api):
                raise ValueError(f"API surface {api!r}: lower-case letters, digits, '_', '-'; a letter first")
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap_parses(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server.strip()!r} is not host:port (a comma-separated list of them)")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_parses(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("expected postgresql://user:password@host:port/database")
        return value

    @field_validator(
        "stripe_api_base", "stripe_meter_events_base", "stripe_portal_return_url", "jobmeter_payg_return_url",
        "next_public_stripe_payment_link_subscription", "next_public_stripe_payment_link_payg",
    )
    @classmethod
    def _http_url_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{value!r} is not an http(s):// URL with a host")
        return value

    @field_validator("jobmeter_smtp_url")
    @classmethod
    def _smtp_url_parses(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parts = urlsplit(value.get_secret_value())
            if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
                raise ValueError("expected smtp://user:password@host:port or smtps://…")
        return value

    @model_validator(mode="after")
    def _development_secrets(self) -> Settings:
        if self.jobmeter_env == "development":
            for name, published in DEVELOPMENT_SECRETS.items():
                if not getattr(self, name).get_secret_value():
                    setattr(self, name, SecretStr(published))
        return self

    def database_url_for(self, projection: str) -> str:
        """Where projection `projection` (its consumer name) lives: its own database if set, else DATABASE_URL."""
        own: str | None = getattr(self, f"jobmeter_{projection.replace('-', '_')}_database_url", None)
        return own or self.database_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build their own `Settings(...)` instead."""
    return Settings()
