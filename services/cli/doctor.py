"""`jobmeter doctor`: everything not final past its bound (recharges, meter reports, parked jobs and top-ups,
outgoing webhook deliveries, dead letters, under-replicated topics), each with the command that resolves it;
exit 1 when anything is listed, 0 when nothing is."""

from __future__ import annotations

from typing import Annotated

import typer

from events.envelope import utcnow
from services.cli.common import Format, emit_rows, with_resources
from services.engine.attention import Item, describe_age
from services.engine.doctor import gather


def _row(item: Item) -> dict[str, str]:
    return {"kind": item.kind, "subject": item.subject, "age": describe_age(item.age_seconds),
            "detail": item.detail, "resolve": item.resolve}


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="a JSON list on stdout instead of a table")] = False,
) -> None:
    """What needs an operator: unsettled recharges, unsent or refused meter reports, parked jobs and top-ups,
    dead letters, under-replicated topics. Exit 1 when anything is listed."""
    items = with_resources(lambda res: gather(res, utcnow()))
    if as_json:
        emit_rows([item.as_json() for item in items], Format.json)
    else:
        emit_rows([_row(item) for item in items], Format.table, title="needs attention")
    if items:
        raise typer.Exit(1)
