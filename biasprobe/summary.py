"""What an analysis's command prints, as data: tables of records, records for the JSON alone, and lines.

An analysis's ``summary`` (:class:`biasprobe.analyses.base.Analysis`) returns a :data:`Summary` built
once from its Datasets; the command line prints it (tables of 80 columns, or one JSON object under
``--json``: ``biasprobe_cli.output.Report.show``) and a report's key numbers may be read from the same
records (:func:`records`). This module imports nothing heavy, so that ``--help`` stays quick.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Column:
    """A table column: the record ``key``, a short ``header``, how a value is written, and whether its
    cells stay whole (``no_wrap``: names) while the other columns wrap to fit."""

    key: str
    header: str
    format: Callable[[Any], str] = str
    left: bool = False
    no_wrap: bool = False


def number(spec: str) -> Callable[[Any], str]:
    """A formatter writing numbers with ``spec`` (``".3f"``) and a missing value (None, NaN) as "-"."""

    def write(value: Any) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)

    return write


@dataclass(frozen=True)
class Table:
    """Records shown as a table (``columns`` pick and write the values), under ``key`` in the JSON."""

    key: str
    records: Sequence[dict]
    columns: Sequence[Column]
    title: str = ""
    caption: str | None = None


@dataclass(frozen=True)
class Records:
    """Records under ``key`` in the JSON only (the text output shows them through :class:`Line`)."""

    key: str
    records: Sequence[dict]


@dataclass(frozen=True)
class Line:
    """A line of text: a message in both outputs (stderr under ``--json``), or with ``text_only`` a line
    of the text output alone (what the JSON holds as records)."""

    text: str
    text_only: bool = False


Summary = list[Table | Records | Line]
"""The parts of a summary, in the order printed."""


def records(summary: Summary, key: str) -> list[dict]:
    """Every record under ``key`` in ``summary`` ([] when it has none)."""
    return [record for part in summary if isinstance(part, Table | Records) and part.key == key
            for record in part.records]
