"""Where long work is: rich bars on a terminal, plain timestamped lines in a log.

One module reports the progress of every long job (analyses, samplers, training, the demo, sweeps):

- :func:`stage` names the part of a job being worked on (``"[2/4] Jacobian unet-bf-n10"``); every
  task started inside it carries that prefix, so a line says *which* checkpoint, image and σ.
- :func:`task` is one counted piece of work (``total`` units, advanced by the caller), and
  :func:`track` iterates over items as one task. Tasks nest: an inner task (the products of one
  Jacobian) shows below the outer one (the images and σ) and disappears when done.
- :func:`note` prints a message (``wrote FILE``) without breaking the bars.

On a terminal the tasks are rich bars on stderr; finished outer bars stay on screen. Each bar's
numbers (count, unit, percentage, elapsed and time left) are always shown whole: where the terminal
is too narrow for the whole line, the description is cut (``…``), then the bar. Elsewhere (a
pipe, a batch job's log) each task writes plain lines on stderr: one when it starts, then at most
one every :data:`LOG_INTERVAL` seconds while it advances, and one when it ends::

    04:58:01 [2/4] Jacobian unet-bf-n10: image 1/2, σ = 0.1 — 384/1024 products (37%, 0:12 elapsed, ~0:21 left)
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

LOG_INTERVAL = 10.0
"""Seconds between two plain progress lines of one task when the output is not a terminal."""

_stages: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("biasprobe_stages", default=())
_live = None  # the rich Progress shown while any task runs on a terminal
_open_tasks = 0


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def is_terminal() -> bool:
    """Whether stderr is an interactive terminal (bars) rather than a pipe or a file (lines)."""
    return _stderr_console().is_terminal


@contextlib.contextmanager
def stage(label: str) -> Iterator[None]:
    """Prefix the descriptions of every task started inside with ``label`` (stages nest)."""
    token = _stages.set((*_stages.get(), label))
    try:
        yield
    finally:
        _stages.reset(token)


def describe(description: str) -> str:
    """``description`` prefixed by the enclosing :func:`stage` labels (what a task or a warning shows)."""
    return ": ".join((*_stages.get(), description)) if description else ": ".join(_stages.get())


def note(message: str) -> None:
    """Print ``message`` on stderr, above the bars if any are showing."""
    if _live is not None:
        _live.console.print(message, markup=False, highlight=False)
    else:
        print(message, file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def counts(done: float, total: int | None, unit: str, elapsed: float, left: float | None = None,
           status: str = "", *, short: bool = False) -> str:
    """The numbers of a task, as both bars and lines show them: ``384/1024 products (37%, 0:12
    elapsed, ~0:21 left), STATUS`` (no total: ``384 products (0:12 elapsed)``); ``short``, for
    narrow terminals, keeps the count and the time left alone: ``384/1024 ~0:21 left``."""
    count = f"{done:g}/{total}" if total else f"{done:g}"
    if short:
        return f"{count} ~{_clock(left)} left" if left is not None and total and done < total else f"{count} {_clock(elapsed)}"
    detail = _clock(elapsed) + " elapsed"
    if total:
        detail = f"{done / total:.0%}, {detail}"
        if left is not None and done < total:
            detail += f", ~{_clock(left)} left"
    unit = f" {unit}" if unit else ""
    status = f", {status}" if status else ""
    return f"{count}{unit} ({detail}){status}"


BAR_WIDTH = 20
"""Characters of a bar on a terminal wide enough; narrower terminals shorten it, then drop it."""

MIN_DESCRIPTION = 12
"""Characters of description kept before the numbers shorten to the count and the time left."""


def _display(console):
    """The one live display of the bars: each row is ``DESCRIPTION BAR NUMBERS`` in the console's width
    at the time it is drawn, the numbers (:func:`counts`) whole and aligned, the description cut to what
    is left (``…``), the bar shortened, then dropped, and the numbers shortened to the count and the
    time left where even so fewer than :data:`MIN_DESCRIPTION` characters of description would fit."""
    from rich.progress import Progress, ProgressBar
    from rich.table import Column, Table

    class Rows:
        def __init__(self, rows) -> None:
            self.rows = rows

        def __rich_console__(self, console, options):
            index = 1 if max((len(full) for _, full, _ in self.rows), default=0) + 1 + MIN_DESCRIPTION > options.max_width else 0
            texts = [row[1 + index] for row in self.rows]
            numbers = max((len(text) for text in texts), default=0)
            room = max(options.max_width - numbers - 1, 1)  # what the description and the bar share
            bar = BAR_WIDTH if room >= 3 * BAR_WIDTH else BAR_WIDTH // 2 if room >= 3 * BAR_WIDTH // 2 else 0
            columns = [Column(width=max(room - (bar + 1 if bar else 0), 1), no_wrap=True, overflow="ellipsis")]
            columns += [Column(width=bar, no_wrap=True)] if bar else []
            table = Table.grid(*columns, Column(width=numbers, no_wrap=True), padding=(0, 1))
            for (shown, *_), text in zip(self.rows, texts):
                drawn = [ProgressBar(total=shown.total, completed=shown.completed, width=bar)] if bar else []
                table.add_row(shown.description, *drawn, text)
            yield table

    class Display(Progress):
        def make_tasks_table(self, tasks):
            rows = []
            for shown in tasks:
                if shown.visible:
                    started = shown.total is not None and shown.completed > shown.fields["first"]
                    numbers = (shown.completed, shown.total, shown.fields["unit"], shown.elapsed or 0.0,
                               shown.time_remaining if started else None, shown.fields["status"])
                    rows.append((shown, counts(*numbers), counts(*numbers, short=True)))
            return Rows(rows)

    return Display(console=console)


class _Lines:
    """A task written as plain timestamped lines: at the start, every LOG_INTERVAL seconds, at the end."""

    def __init__(self, description: str, total: int | None, unit: str, completed: float) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = self.first = completed
        self.status = ""
        self.began = self.last = time.monotonic()
        self._write()

    def _write(self) -> None:
        self.written = self.done
        elapsed = time.monotonic() - self.began
        left = None
        if self.total and self.first < self.done < self.total:
            left = elapsed * (self.total - self.done) / (self.done - self.first)
        print(f"{time.strftime('%H:%M:%S')} {self.description} — {counts(self.done, self.total, self.unit, elapsed, left, self.status)}",
              file=sys.stderr, flush=True)

    def advance(self, amount: float = 1, status: str | None = None) -> None:
        self.done += amount
        self.status = self.status if status is None else status
        now = time.monotonic()
        if now - self.last >= LOG_INTERVAL:
            self.last = now
            self._write()

    def close(self) -> None:
        if self.done != self.written:
            self._write()


class _Bar:
    """A task shown as a rich bar in the one live display; inner bars are removed when done."""

    def __init__(self, description: str, total: int | None, unit: str, completed: float) -> None:
        global _live
        if _live is None:
            _live = _display(_stderr_console())
            _live.start()
        self.outer = _open_tasks == 0
        self.description = description
        self.task = _live.add_task(description, total=total, completed=completed, unit=unit, first=completed,
                                   status="")

    def advance(self, amount: float = 1, status: str | None = None) -> None:
        if status is None:
            _live.advance(self.task, amount)
        else:
            _live.update(self.task, advance=amount, status=status)

    def close(self) -> None:
        global _live
        if not self.outer:
            _live.remove_task(self.task)
            return
        _live.stop()
        _live = None


@contextlib.contextmanager
def task(description: str, total: int | None = None, *, unit: str = "", completed: float = 0,
         enabled: bool = True) -> Iterator[Callable]:
    """A counted piece of work: yields ``advance(amount=1, status=None)``; silent when not ``enabled``.

    The description is prefixed by the enclosing :func:`stage` labels; ``unit`` names what is
    counted (``"products"``, ``"steps"``); ``completed`` units are done already (a resumed run);
    ``status`` is a short changing text (``"loss 0.031"``)."""
    global _open_tasks
    if not enabled:
        yield lambda amount=1, status=None: None
        return
    kind = _Bar if is_terminal() else _Lines
    shown = kind(describe(description), total, unit, completed)
    _open_tasks += 1
    try:
        yield shown.advance
    finally:
        _open_tasks -= 1
        shown.close()


def track(items: Iterable[T], description: str, total: int | None = None, enabled: bool = True,
          *, unit: str = "") -> Iterator[T]:
    """Iterate over ``items`` as one :func:`task` of ``total`` (default ``len(items)``) units."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with task(description, total, unit=unit, enabled=enabled) as advance:
        for item in items:
            yield item
            advance()
