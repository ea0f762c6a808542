"""`jobmeter init`: a `.env` with fresh random secrets for a new deployment, and rotation of the ones we issue."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from services.cli.common import console, errors

# Secrets jobmeter issues itself: `--rotate` makes a new one. What each protects: SECURITY.md.
# Rotating JOBMETER_WEBHOOK_SIGNING_KEY changes every webhook endpoint's secret (docs/webhooks.md).
ISSUED = (
    "JOBMETER_INGEST_TOKEN", "JOBMETER_ADMIN_TOKEN", "JOBMETER_CONSOLE_SESSION_KEY", "JOBMETER_WEBHOOK_SIGNING_KEY",
)
# Issued by Stripe and RapidAPI: a random one keeps forgeries out until the real one replaces it.
PLACEHOLDERS = {
    "STRIPE_WEBHOOK_SECRET": "replace with the signing secret of your Stripe webhook endpoint (Dashboard → "
                             "Developers → Webhooks); until then no delivery verifies",
    "RAPIDAPI_PROXY_SECRET": "replace with X-RapidAPI-Proxy-Secret from the RapidAPI provider dashboard",
}


def fresh(name: str) -> str:
    value = secrets.token_urlsafe(32)
    return f"whsec_{value}" if name == "STRIPE_WEBHOOK_SECRET" else value


def new_env_file(now: datetime) -> str:
    lines = [
        f"# Written by `jobmeter init` at {now:%Y-%m-%d %H:%M} UTC: this deployment's own secrets. Keep it private.",
        "# Every other setting has a default; .env.example lists them all. SECURITY.md says what each secret guards.",
        "JOBMETER_ENV=production",
    ]
    lines += [f"{name}={fresh(name)}" for name in ISSUED]
    for name, note in PLACEHOLDERS.items():
        lines += [f"# {note}", f"{name}={fresh(name)}"]
    return "\n".join(lines) + "\n"


def rotated(text: str, names: list[str]) -> str:
    """The same file with a new value for each of `names` (added at the end when absent)."""
    out, seen = [], set()
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and key in names:
            line = f"{key}={fresh(key)}"
            seen.add(key)
        out.append(line)
    out += [f"{name}={fresh(name)}" for name in names if name not in seen]
    return "\n".join(out) + "\n"


def write_private(path: Path, body: str) -> None:
    """Readable by its owner only, from the first byte on."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(body)
    os.replace(temporary, path)


def init(
    path: Annotated[Path, typer.Option(help="the file to write")] = Path(".env"),
    force: Annotated[bool, typer.Option(help="replace an existing file (its secrets are lost)")] = False,
    rotate: Annotated[list[str] | None, typer.Option(
        help=f"give one secret of an existing file a new value: {', '.join(ISSUED)} (repeatable)")] = None,
) -> None:
    """Write a .env with fresh random secrets for a new deployment (docker compose reads it), or rotate some."""
    if rotate:
        unknown = [name for name in rotate if name not in ISSUED]
        if unknown:
            raise typer.BadParameter(f"{', '.join(unknown)}: only {', '.join(ISSUED)} are issued by jobmeter")
        if not path.is_file():
            errors.print(f"[red]error:[/red] {path} does not exist; run `jobmeter init` first")
            raise typer.Exit(1)
        write_private(path, rotated(path.read_text(), rotate))
        console.print(f"Rotated {', '.join(rotate)} in {path}. Restart every jobmeter process to apply it; "
                      "SECURITY.md says who else must learn the new value.")
        return
    if path.exists() and not force:
        errors.print(f"[red]error:[/red] {path} exists; keep it, rotate with --rotate NAME, or replace it with --force")
        raise typer.Exit(1)
    write_private(path, new_env_file(datetime.now(UTC)))
    console.print(f"Wrote {path} (mode 600) with fresh secrets. Put Stripe's webhook signing secret and RapidAPI's "
                  "proxy secret in place of the two placeholders before going live.")
