"""Every setting checked when a process starts, not when an event first needs it. It lives in the composition
root because the rules come from the areas (PAYG's price list, say).

`problems` is pure: it lists what is wrong with a `Settings` (cross-field rules, and in production the shared
secrets). `load` builds the process's settings and raises one `ConfigurationError` naming every problem, the
field-level ones pydantic found included, so an operator fixes a configuration in one pass.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError

from jobmeter.settings import DEVELOPMENT_SECRETS, Settings, get_settings
from projections.caps.rules import parse_percents
from projections.catalog import PROJECTIONS
from projections.payg.rules import PriceError, parse_prices

MIN_SECRET_LENGTH = 16


class ConfigurationError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


def env_name(field: str) -> str:
    return field.upper()


def secret_problems(settings: Settings) -> list[str]:
    """In production: every shared secret set, long enough, not a published value, and no two alike."""
    if settings.jobmeter_env != "production":
        return []
    found = []
    values: dict[str, str] = {}
    for field, published in DEVELOPMENT_SECRETS.items():
        secret: SecretStr = getattr(settings, field)
        value = secret.get_secret_value()
        name = env_name(field)
        if not value:
            found.append(f"{name} is unset (run `jobmeter init` to write fresh secrets to .env)")
        elif value == published or value in DEVELOPMENT_SECRETS.values():
            found.append(f"{name} is a published development value; set a secret of your own")
        elif len(value) < MIN_SECRET_LENGTH:
            found.append(f"{name} is shorter than {MIN_SECRET_LENGTH} characters")
        else:
            for other, other_value in values.items():
                if other_value == value:
                    found.append(f"{name} equals {other}: a leak of one would give away the other")
            values[name] = value
    return found


def payg_problems(settings: Settings) -> list[str]:
    found = []
    try:
        prices = parse_prices(settings.jobmeter_payg_prices)
    except PriceError as error:
        prices = {}
        found.append(f"JOBMETER_PAYG_PRICES: {error}")
    missing = [api for api in settings.jobmeter_apis if api not in prices]
    if missing:
        found.append(f"JOBMETER_PAYG_PRICES has no price for {', '.join(missing)}, which JOBMETER_APIS names")
    unknown = sorted(set(prices) - set(settings.jobmeter_apis))
    if unknown:
        found.append(f"JOBMETER_PAYG_PRICES prices {', '.join(unknown)}, which JOBMETER_APIS does not name")
    free = [api for api, price in prices.items() if price <= 0]
    if free:
        found.append(f"JOBMETER_PAYG_PRICES: the price of {', '.join(free)} must be positive")
    if settings.jobmeter_payg_threshold_minor >= settings.jobmeter_payg_recharge_minor:
        found.append(
            f"JOBMETER_PAYG_THRESHOLD_MINOR ({settings.jobmeter_payg_threshold_minor}) must be below "
            f"JOBMETER_PAYG_RECHARGE_MINOR ({settings.jobmeter_payg_recharge_minor}), or one recharge would not lift "
            "a balance above the threshold"
        )
    if settings.jobmeter_payg_backoff_max_seconds < settings.jobmeter_payg_backoff_seconds:
        found.append("JOBMETER_PAYG_BACKOFF_MAX_SECONDS must not be below JOBMETER_PAYG_BACKOFF_SECONDS")
    return found


def other_problems(settings: Settings) -> list[str]:
    found = []
    factor, isr = settings.jobmeter_replication_factor, settings.jobmeter_min_insync_replicas
    if isr is not None and isr > (factor if factor is not None else 3):
        found.append(f"JOBMETER_MIN_INSYNC_REPLICAS ({isr}) is above the replication factor: no write could succeed")
    if settings.jobmeter_smtp_ca_file is not None and not settings.jobmeter_smtp_ca_file.is_file():
        found.append(f"JOBMETER_SMTP_CA_FILE {settings.jobmeter_smtp_ca_file} is not a readable file")
    try:
        parse_percents(settings.jobmeter_usage_alert_percents)
    except ValueError as error:
        found.append(f"JOBMETER_USAGE_ALERT_PERCENTS: {error}")
    return found


def database_problems(settings: Settings) -> list[str]:
    """DATABASE_URL and each projection's own (JOBMETER_<NAME>_DATABASE_URL): postgresql:// with a database."""
    found = []
    urls = {"DATABASE_URL": settings.database_url}
    for name in PROJECTIONS:
        own = getattr(settings, f"jobmeter_{name.replace('-', '_')}_database_url")
        if own is not None:
            urls[f"JOBMETER_{name.replace('-', '_').upper()}_DATABASE_URL"] = own
    for env, url in urls.items():
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
            found.append(f"{env} is not postgresql://user:password@host:port/database")
    return found


def problems(settings: Settings) -> list[str]:
    return secret_problems(settings) + payg_problems(settings) + other_problems(settings) + database_problems(settings)


def check(settings: Settings) -> Settings:
    """The settings, once nothing is wrong with them; else ConfigurationError naming every problem."""
    found = problems(settings)
    if found:
        raise ConfigurationError(found)
    return settings


def field_problems(error: ValidationError) -> list[str]:
    found = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        found.append(f"{env_name(where)}: {item['msg']}")
    return found


def load() -> Settings:
    """This process's settings (environment, .env, stack.env), checked."""
    try:
        settings = get_settings()
    except ValidationError as error:
        raise ConfigurationError(field_problems(error)) from None
    return check(settings)
