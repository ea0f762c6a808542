"""`jobmeter deadletters list | show`: what the consumers could not parse or apply, with the reason."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.markup import escape

from events.topics import Topics
from jobmeter.settings import get_settings
from projections.log import LogError
from services.cli.common import Format, console, emit_rows, errors
from services.platform.deadletters import DeadLetter, NotFound, find_dead_letter, list_dead_letters

app = typer.Typer(no_args_is_help=True)


def _where() -> tuple[str, Topics]:
    settings = get_settings()
    return settings.kafka_bootstrap_servers, Topics(settings.jobmeter_topic_prefix)


def _unreadable(error: LogError) -> typer.Exit:
    errors.print(f"[red]cannot read the dead-letter topic:[/red] {escape(str(error))}")
    return typer.Exit(1)


@app.command("list")
def list_(
    consumer: Annotated[str | None, typer.Option(help="only this consumer's (ledger, meter, …)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout instead of a table")] = False,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, the newest")] = 50,
) -> None:
    """Dead letters, newest first: id, consumer, where the record was read, the reason, when."""
    try:
        letters = asyncio.run(list_dead_letters(*_where(), consumer=consumer, limit=limit))
    except LogError as error:
        raise _unreadable(error) from None
    if as_json:
        emit_rows([letter.summary() for letter in letters], Format.json)
        return
    emit_rows([_row(letter) for letter in letters], Format.table, title="dead letters")


def _row(letter: DeadLetter) -> dict[str, str]:
    """A table row narrow enough for a terminal: the record as topic/partition@offset, the time to the second."""
    where = letter.source if letter.partition is None else f"{letter.source}/{letter.partition}@{letter.offset}"
    at = letter.at.isoformat(timespec="seconds")
    return {"id": letter.id, "consumer": letter.consumer, "record": where, "reason": letter.reason, "at": at}


@app.command()
def show(
    id_: Annotated[str, typer.Argument(metavar="ID", help="a dead letter's id, or the start of one")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
) -> None:
    """One dead letter with the record it holds (the original bytes as UTF-8); exit 1 if there is none."""
    try:
        letter = asyncio.run(find_dead_letter(*_where(), id_))
    except LogError as error:
        raise _unreadable(error) from None
    except NotFound as error:
        errors.print(escape(str(error)))
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(letter.detail(), indent=2))
        return
    for field, value in letter.summary().items():
        console.print(f"[bold]{field}[/bold]: {escape('' if value is None else str(value))}")
    if letter.key is not None:
        console.print(f"[bold]key[/bold]: {escape(letter.key)}")
    console.print("[bold]payload[/bold]:")
    print(letter.payload)
