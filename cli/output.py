"""How commands report results: tables that fit 80 columns (on a terminal and in a pipe alike), or
one JSON object on stdout for scripts (``--json``), and a line for every file written. An analysis's
tables are data of the library (:mod:`biasprobe.summary`: :class:`Column`, :func:`number`), printed by
:meth:`Report.show`.

A command builds its results once, as records (dicts of plain numbers and words); :class:`Report`
prints them as a table with short headers whose cells wrap rather than being cut, or collects them
into the JSON object. Messages go to stdout beside the tables, and to stderr under ``--json`` so
that stdout holds nothing but the JSON."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from biasprobe.summary import Column, Line, Records, Summary, Table, number

Json = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the results as one JSON object on stdout, for scripts (messages go to stderr).",
    ),
]


def plain(value: Any) -> Any:
    """``value`` as JSON: numpy scalars and arrays to Python numbers and lists, NaN and ∞ to null,
    paths to strings."""
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        value = value.tolist()
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


class Report:
    """What one command prints: tables and messages, or (``as_json``) a single JSON object at the end."""

    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json
        self.results: dict[str, Any] = {}

    def say(self, message: str) -> None:
        """A message, one unbroken line (paths stay whole in a pipe): on stdout, or on stderr under ``--json``."""
        print(message, file=sys.stderr if self.as_json else sys.stdout, flush=True)

    def wrote(self, path: str | Path, what: str = "") -> None:
        """The summary line of a file or store written, recorded under ``written`` in the JSON."""
        self.results.setdefault("written", []).append(str(path))
        self.say(f"wrote {path}" + (f" ({what})" if what else ""))

    def table(self, key: str, records: Sequence[dict], columns: Sequence[Column], *, title: str = "",
              caption: str | None = None) -> None:
        """``records`` as a table (``columns`` pick and write the values), or under ``key`` in the JSON.

        The title above and the caption below wrap at the console's width (80 in a pipe), not at the
        table's, so that a narrow table keeps a one-line title."""
        if self.as_json:
            self.records(key, records)
            return
        from rich import box
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        console = Console(highlight=False)
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False)
        for column in columns:
            table.add_column(column.header, justify="left" if column.left else "right", overflow="fold",
                             no_wrap=column.no_wrap)
        for record in records:
            table.add_row(*(column.format(record.get(column.key)) for column in columns))
        if title:
            console.print(Text(title))
        console.print(table)
        if caption:
            console.print(Text(caption))

    def records(self, key: str, records: Sequence[dict]) -> None:
        """``records`` appended under ``key`` in the JSON (shown by the command's own lines otherwise)."""
        if self.as_json:
            self.results.setdefault(key, []).extend(records)

    def show(self, summary: Summary) -> None:
        """An analysis's summary (:mod:`biasprobe.summary`): its tables, records and lines, in order."""
        for part in summary:
            if isinstance(part, Table):
                self.table(part.key, part.records, part.columns, title=part.title, caption=part.caption)
            elif isinstance(part, Records):
                self.records(part.key, part.records)
            elif not (part.text_only and self.as_json):
                self.say(part.text)

    def set(self, **results: Any) -> None:
        """Top-level values of the JSON object (shown by the command's own lines otherwise)."""
        self.results.update(results)

    def finish(self) -> None:
        """Print the JSON object, under ``--json``."""
        if self.as_json:
            sys.stdout.write(json.dumps(plain(self.results), indent=2, ensure_ascii=False) + "\n")
