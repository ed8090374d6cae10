"""The output folder of a report: written only where biasprobe wrote before, never over a user's files.

A folder is the report's when it did not exist, was empty, or holds the mark file
``.biasprobe-report.json`` that lists what earlier reports wrote there. Any other folder is
refused. Inside its folder a report replaces only the files the mark lists (each write is atomic:
a temporary sibling, then a rename), records every name in the mark *before* writing it (an
interrupted run can be rerun), and at the end removes the rendered files of earlier runs that this
run no longer writes. Cached stores (``stores``) are kept across runs; a run that knows it used every
store it needs may remove the others (:meth:`ReportFolder.prune_stores`: stale cache entries, e.g. of
checkpoints since retrained). A recipe may keep notes of its
own in the mark (:meth:`ReportFolder.note`, e.g. the items the paper report rendered).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from biasprobe.atomic import replace_file
from biasprobe.errors import InputError, ParameterError
from biasprobe.validation import writable_parent

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MARK = ".biasprobe-report.json"
FIGURE_FORMATS = ("png", "pdf")
DPI = 150


class ReportFolder:
    """Claim ``path`` for a report (see the module doc); ``on_file`` hears of every file written."""

    def __init__(self, path: str | os.PathLike, on_file: Callable[[Path], None] | None = None):
        self.path = Path(path)
        self.on_file = on_file or (lambda path: None)
        self.previous = self._claim()
        self.files: list[str] = []
        self.stores: set[str] = set(self.previous.get("stores", []))
        self.used: set[str] = set()
        self.notes: dict = {}

    def _claim(self) -> dict:
        path = self.path
        if path.exists() and not path.is_dir():
            raise InputError(f"{path} is a file, not a folder; choose another " + "{out} folder", parameters=["out"])
        if (path / MARK).exists():
            if not os.access(path, os.W_OK | os.X_OK):
                raise ParameterError("out", f"cannot be written: no permission to write in {path}")
            try:
                return json.loads((path / MARK).read_text())
            except (OSError, ValueError):
                raise InputError(f"{path / MARK} is unreadable; delete it or choose another " + "{out} folder",
                                 parameters=["out"]) from None
        if path.exists() and any(path.iterdir()):
            raise InputError(
                f"{path} holds files that biasprobe report or demo did not write; choose another " + "{out} folder (or an "
                "empty one)", parameters=["out"])
        if path.is_dir():  # empty: it must take files (a read-only file system, another user's folder)
            if not os.access(path, os.W_OK | os.X_OK):
                raise ParameterError("out", f"cannot be written: no permission to write in {path}")
        else:
            writable_parent(path, "out")
        path.mkdir(parents=True, exist_ok=True)
        return {}

    def note(self, **values) -> None:
        """Keep ``values`` (plain data) in the mark from now on; an earlier run's notes are in ``previous``."""
        self.notes.update(values)

    def owns(self, name: str) -> bool:
        """Whether ``name`` (relative to the folder) is free or was written by a report."""
        return not (self.path / name).exists() or name in self.previous.get("files", []) or name in self.stores

    def check(self, names: list[str]) -> None:
        """Refuse, before anything is written, if one of ``names`` is a file the report did not write."""
        foreign = [name for name in names if not self.owns(name)]
        if foreign:
            raise InputError(
                f"{self.path / foreign[0]} exists and was not written by biasprobe report or demo; move it or choose "
                "another {out} folder", parameters=["out"])

    def _target(self, name: str) -> Path:
        self.check([name])
        if name not in self.files:
            self.files.append(name)
        self._write_mark()
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        """Write ``text`` to ``name`` atomically."""
        target = replace_file(lambda tmp: tmp.write_text(text, encoding="utf-8"), self._target(name))
        self.on_file(target)
        return target

    def write_figure(self, figure: Figure, stem: str) -> dict[str, str]:
        """Save ``figure`` as STEM.png and STEM.pdf (atomically); their names by format."""
        names = {}
        for fmt in FIGURE_FORMATS:
            name = f"{stem}.{fmt}"
            target = replace_file(lambda tmp, fmt=fmt: save_figure(figure, tmp, format=fmt, bbox_inches="tight"),
                                  self._target(name))
            self.on_file(target)
            names[fmt] = name
        return names

    def store_path(self, name: str) -> Path:
        """Where a cached store ``name`` lives; it is recorded as the report's before it is written."""
        self.check([name])
        self.stores.add(name)
        self.used.add(name)
        self._write_mark()
        return self.path / name

    def adopt_store(self, name: str) -> None:
        """Record ``name`` (``stores/FILE``), a store placed in the folder by hand (e.g. computed on another machine
        with the same recipe) that the caller has verified as the store it needs, as the report's and used: it is
        read, never written over, and from now on kept or pruned like the report's own."""
        self.stores.add(name)
        self.used.add(name)
        self._write_mark()

    def prune_stores(self) -> list[str]:
        """Remove the cached stores (``stores/NAME``) that earlier runs wrote and this run did not use;
        their names. Only names under ``stores/`` inside the folder are touched (a link is removed, never
        followed); a demo's results at the folder's top level are not a cache and stay."""
        stores = (self.path / "stores").resolve()
        stale = []
        for name in sorted(self.stores - self.used):
            path = self.path / name
            inside = name.startswith("stores/") and path.parent.resolve() == stores and path.name not in ("", ".", "..")
            if not inside:
                continue
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
            self.stores.discard(name)
            stale.append(name)
        self._write_mark()
        return stale

    def finish(self) -> None:
        """Remove the rendered files of earlier runs that this run did not write; record this run's."""
        for name in self.previous.get("files", []):
            stale = self.path / name
            if name not in self.files and stale.is_file():
                stale.unlink()
        self.previous = {**self.notes, "files": self.files, "stores": sorted(self.stores)}
        self._write_mark()

    def _write_mark(self) -> None:
        earlier = [name for name in self.previous.get("files", []) if name not in self.files]
        mark = {"written_by": "biasprobe report", **self.notes, "files": [*self.files, *earlier],
                "stores": sorted(self.stores)}
        replace_file(lambda tmp: tmp.write_text(json.dumps(mark, indent=1)), self.path / MARK)


def figure_metadata(fmt: str) -> dict:
    """The metadata every saved figure carries: the software named as biasprobe's version alone (not
    matplotlib's), no creation or modification date, so that redrawing unchanged stores rewrites the
    same bytes (PDF, PNG, SVG)."""
    from biasprobe import __version__

    creator = f"biasprobe {__version__}"
    return {"pdf": {"Creator": creator, "Producer": creator, "CreationDate": None, "ModDate": None},
            "png": {"Software": creator},
            "svg": {"Creator": creator, "Date": None}}.get(fmt, {})


def save_figure(figure: Figure, path: str | os.PathLike, *, dpi: int = DPI, format: str | None = None,
                **options) -> Path:
    """Save ``figure`` to ``path`` (its folder made if missing) with :func:`figure_metadata`: the one
    place biasprobe writes a figure file (reports, the demo, the commands' ``--figure``)."""
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".") or "png").lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "biasprobe"}):  # SVG element ids from a fixed salt, not at random
        _freeze_layout(figure)
        figure.savefig(path, dpi=dpi, format=fmt, metadata=figure_metadata(fmt), **options)
    return path


LAYOUT_DIGITS = 5
"""Decimals of the figure fraction to which :func:`_freeze_layout` rounds every position (1e-5 of a
figure is far below a pixel)."""


def _freeze_layout(figure: Figure) -> None:
    """Run ``figure``'s layout engine once, round every subfigure's and axes' position to
    :data:`LAYOUT_DIGITS` and turn the engine off. Constrained layout's solver lands a millionth of a
    point apart from one process to the next (its constraints come in an order that depends on memory
    addresses), which a PDF's coordinates show; rounded positions are the same in every run."""
    import numpy as np

    if figure.get_layout_engine() is None:
        return
    figure.draw_without_rendering()

    def rounded(canvas) -> None:
        for sub in canvas.subfigs:
            sub.bbox_relative.set_points(np.round(sub.bbox_relative.get_points(), LAYOUT_DIGITS))
            rounded(sub)
        for axis in canvas.axes:
            axis.set_position(np.round(axis.get_position(original=False).bounds, LAYOUT_DIGITS), which="both")

    rounded(figure)
    figure.set_layout_engine("none")
