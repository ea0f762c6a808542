"""`jobmeter docs`: documents generated from the code, so they cannot drift from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from services.cli.common import console
from services.engine.asyncapi import as_json

app = typer.Typer(no_args_is_help=True)


@app.command()
def asyncapi(
    output: Annotated[Path, typer.Option(help="where to write the AsyncAPI JSON")] = Path("docs/asyncapi.json"),
) -> None:
    """Write the AsyncAPI description of every topic and consumer."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(as_json(), indent=2, sort_keys=True) + "\n")  # stable: diffs show real changes
    console.print(f"wrote {output}")
