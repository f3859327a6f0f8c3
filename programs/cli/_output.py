"""How listings are printed: a table for people, or JSON (``--output json``) for programs.

JSON is the resources' canonical protobuf JSON form (camelCase fields, enum names),
the same form ``astra deploy`` reads, as one array.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import click
from google.protobuf import json_format
from google.protobuf.message import Message
from rich import box
from rich.console import Console
from rich.table import Table

#: Width of a table printed to a pipe or a file: wide enough never to cut a cell.
_PIPE_WIDTH = 10_000


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its header and how a row's cell is made."""

    header: str
    cell: Callable[[Any], str]


def output_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a listing command ``--output/-o table|json``."""
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="a table for people, or JSON (the resources' protobuf JSON form)",
    )(command)


def emit(
    items: Sequence[Any],
    output: str,
    columns: Sequence[Column],
    rows: Callable[[Any], Iterable[Any]] = lambda item: (item,),
    as_json: Callable[[Any], Any] | None = None,
) -> None:
    """Print ``items`` as ``output`` says: a JSON array (of each item ``as_json`` makes;
    by default the item is a message, in its JSON form), or a table with ``columns`` and
    the ``rows`` each item makes (one row, the item itself, by default)."""
    if output == "json":
        click.echo(json.dumps([(as_json or to_json)(item) for item in items], indent=2))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column.header, overflow="fold")
    for item in items:
        for row in rows(item):
            table.add_row(*(column.cell(row) or "-" for column in columns))
    console().print(table)


def to_json(message: Message) -> dict[str, Any]:
    """A message's canonical protobuf JSON form, as a dict."""
    return json_format.MessageToDict(message)


def console() -> Console:
    """Standard output as rich prints to it: the terminal's width on a terminal, never
    wrapped on a pipe."""
    width = None if sys.stdout.isatty() else _PIPE_WIDTH
    return Console(width=width, highlight=False, soft_wrap=False)
