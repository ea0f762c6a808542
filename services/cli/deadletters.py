"""`jobmeter deadletters list | show | redrive`: what the consumers could not parse or apply, with the reason; and
applying it again once the cause is fixed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.markup import escape

from events.topics import Topics
from jobmeter.settings import get_settings
from projections.log import LogError
from services.cli.common import Format, console, emit_rows, errors, with_resources
from services.platform.deadletters import (
    DeadLetter,
    NotFound,
    all_dead_letters,
    find_dead_letter,
    list_dead_letters,
)
from services.platform.redrive import Redriven, redrive
from services.platform.resources import Resources

app = typer.Typer(no_args_is_help=True)
T = TypeVar("T")


def _where() -> tuple[str, Topics]:
    settings = get_settings()
    return settings.kafka_bootstrap_servers, Topics(settings.jobmeter_topic_prefix)


def _unreadable(error: LogError) -> typer.Exit:
    errors.print(f"[red]cannot read the dead-letter topic:[/red] {escape(str(error))}")
    return typer.Exit(1)


def _found(call: Callable[[], T]) -> T:
    """What `call` reads from the dead-letter topic; exit 1 saying why when the topic cannot be read or the letter
    asked for is not there."""
    try:
        return call()
    except LogError as error:
        raise _unreadable(error) from None
    except NotFound as error:
        errors.print(escape(str(error)))
        raise typer.Exit(1) from None


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
    return {"id": letter.id, "consumer": letter.consumer, "record": where, "reason": letter.reason, "at": at,
            "redriven": letter.redriven or ""}


@app.command()
def show(
    id_: Annotated[str, typer.Argument(metavar="ID", help="a dead letter's id, or the start of one")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
) -> None:
    """One dead letter with the record it holds (the original bytes as UTF-8); exit 1 if there is none."""
    letter = _found(lambda: asyncio.run(find_dead_letter(*_where(), id_)))
    if as_json:
        print(json.dumps(letter.detail(), indent=2))
        return
    for field, value in letter.summary().items():
        console.print(f"[bold]{field}[/bold]: {escape('' if value is None else str(value))}")
    if letter.key is not None:
        console.print(f"[bold]key[/bold]: {escape(letter.key)}")
    console.print("[bold]payload[/bold]:")
    print(letter.payload)


@app.command("redrive")
def redrive_(
    id_: Annotated[str | None, typer.Argument(metavar="[ID]", help="a dead letter's id, or the start of one")] = None,
    every: Annotated[bool, typer.Option("--all", help="every dead letter not applied yet (of --consumer)")] = False,
    consumer: Annotated[str | None, typer.Option(help="with --all: only this consumer's")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
) -> None:
    """Apply dead letters again through the consumer that refused them, once their cause is fixed; each outcome is
    recorded beside the letter. Safe to repeat: a redriven job still counts once. Exit 1 if any was refused."""
    if (id_ is None) == (not every):
        errors.print("[red]name one dead letter ID, or pass --all[/red]")
        raise typer.Exit(2)

    async def work(res: Resources) -> list[Redriven]:
        if id_ is not None:
            letters = [await find_dead_letter(res.settings.kafka_bootstrap_servers, res.topics, id_)]
        else:
            letters = [letter for letter in await all_dead_letters(res.settings.kafka_bootstrap_servers, res.topics)
                       if not letter.settled and (consumer is None or letter.consumer == consumer)]
        return [await redrive(res, letter) for letter in letters]

    done = _found(lambda: with_resources(work, producer="jobmeter-redrive"))
    if as_json:
        print(json.dumps([r.as_json() for r in done], indent=2))
    else:
        for r in done:
            said = "[green]applied[/green]" if r.applied else f"[red]refused[/red]: {escape(r.detail)}"
            console.print(f"{r.letter.id} ({r.letter.consumer or '-'}): {said}")
        if not done:
            console.print("nothing to redrive")
    if any(not r.applied for r in done):
        raise typer.Exit(1)
