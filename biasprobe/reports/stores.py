"""Render stores into figures (PNG and PDF) and an index page (Markdown and HTML) with provenance.

A store's ``analysis`` attr picks its registered analysis (:func:`biasprobe.analyses.base.registry`),
whose ``figures`` and ``numbers`` the report draws and lists: a new analysis plugs in where it is
defined, not here. Stores with a ``checkpoint`` dimension (sweeps, comparisons) draw one curve per
checkpoint.

>>> import biasprobe as bp
>>> bp.report(["dit-n10.gap.zarr", "dit-n10.jacobian.zarr"], "report")   # report/index.md, index.html
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import xarray as xr

from biasprobe.analyses.base import Analysis, StoreFigure, registry, resolve
from biasprobe.errors import InputError
from biasprobe.figures.base import checkpoint_label
from biasprobe.progress import track
from biasprobe.reports.folder import ReportFolder
from biasprobe.reports.page import Block, Heading, Picture, Table, Text, html_page, markdown
from biasprobe.store import SINGLE_FILE_SUFFIX
from biasprobe.store import open as open_store

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PROVENANCE = (
    ("checkpoint", "checkpoint"),
    ("checkpoint_sha256", "checkpoint sha256"),
    ("checkpoint_b", "checkpoint B"),
    ("checkpoint_b_sha256", "checkpoint B sha256"),
    ("biasprobe_version", "biasprobe version"),
    ("command", "command"),
    ("created", "created"),
    ("device", "device"),
    ("seed", "seed"),
)
"""Store attrs shown per store, in this order (attrs a store lacks are left out)."""


def label(path: str | os.PathLike | None, fallback: str = "denoiser") -> str:
    """A short name for a checkpoint: its file stem (or folder name)."""
    return checkpoint_label(path, fallback)


def per_checkpoint(dataset: xr.Dataset) -> dict[str, xr.Dataset]:
    """{checkpoint name: its Dataset}: one entry per value of a ``checkpoint`` dimension (a sweep store is
    split into the Datasets its analysis returned), else the one Dataset."""
    if "checkpoint" not in dataset.dims:
        return {label(dataset.attrs.get("checkpoint")): dataset}
    try:  # sweep stores (biasprobe.sweeps) keep each checkpoint's own attrs
        from biasprobe.sweeps.store import is_sweep, split
    except ImportError:
        is_sweep = None
    if is_sweep is not None and is_sweep(dataset):
        return {label(name, name): part for name, part in split(dataset).items()}
    return {label(str(name), str(name)): dataset.sel(checkpoint=name) for name in dataset.checkpoint.values}


def parts(analysis: Analysis, dataset: xr.Dataset) -> dict[str, xr.Dataset]:
    """The Datasets by checkpoint name that ``analysis``'s numbers and summary take: a sweepable analysis's
    store split per checkpoint (:func:`per_checkpoint`), any other store whole under its checkpoint's name."""
    return per_checkpoint(dataset) if analysis.sweep is not None else {label(dataset.attrs.get("checkpoint")): dataset}


def draw(item: StoreFigure, dataset: xr.Dataset) -> Figure:
    """``item`` drawn from ``dataset`` (split per checkpoint when the figure takes them so)."""
    return resolve(item.draw)(per_checkpoint(dataset) if item.per_checkpoint else dataset)


def __getattr__(name: str):
    """``FIGURES``, ``NUMBERS`` and ``TOGETHER``: what the registered analyses (:func:`registry`) draw and list,
    by analysis name, read afresh from the registry."""
    if name == "FIGURES":
        return {key: list(found.figures) for key, found in registry().items() if found.figures}
    if name == "NUMBERS":
        return {key: found.key_numbers for key, found in registry().items() if found.numbers is not None}
    if name == "TOGETHER":
        return {key: found.together for key, found in registry().items() if found.together is not None}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------ the report


@dataclass
class Report:
    """What a report wrote: the index pages and every file, in the order written."""

    index: Path
    html: Path
    files: list[Path]


def report(
    stores: Iterable[str | os.PathLike],
    out: str | os.PathLike = "report",
    *,
    title: str = "biasprobe report",
    progress: bool = False,
    on_file: Callable[[Path], None] | None = None,
) -> Report:
    """Render every store's figures into folder ``out`` with ``index.md`` and ``index.html``.

    Each store is opened, its figures are chosen by its ``analysis`` attr (its registered analysis) and
    saved as PNG and PDF, and the index shows them inline with the store's provenance and key
    numbers. ``out`` must be new, empty, or a folder an earlier report wrote (see
    :class:`~biasprobe.reports.folder.ReportFolder`); ``on_file`` is called with each file written.
    """
    paths = [Path(store) for store in stores]
    if not paths:
        raise InputError("no stores given: pass one or more .zarr stores written by a biasprobe analysis")
    datasets = {path: open_store(path) for path in paths}  # every store must open before anything is written
    analyses = {name: found for name, found in registry().items() if found.figures}
    unknown = {path: ds.attrs.get("analysis") for path, ds in datasets.items() if ds.attrs.get("analysis") not in analyses}
    if unknown:
        path, analysis = next(iter(unknown.items()))
        raise InputError(f"{path} holds a {analysis or 'unlabelled'} store, which has no report figures; "
                         f"reports render {', '.join(sorted(analyses))}")
    folder = ReportFolder(out, on_file)
    stems = _unique_stems(paths)
    groups = {analysis: group for analysis, group in _groups(datasets, stems).items()
              if analyses[analysis].together is not None and analyses[analysis].together.applies(group)}
    planned = [f"{_figure_stem(stems[p], f.name)}.{fmt}" for p, ds in datasets.items()
               for f in analyses[ds.attrs["analysis"]].figures if f.applies(ds) for fmt in ("png", "pdf")]
    planned += [f"all.{analysis}.{fmt}" for analysis in groups for fmt in ("png", "pdf")]
    folder.check([*planned, "index.md", "index.html"])
    from biasprobe import __version__

    blocks: list[Block] = [Heading(title, 1), Text(
        f"Rendered by biasprobe {__version__} from {len(paths)} store{'s' * (len(paths) != 1)}; every figure is "
        "drawn from its store alone (PNG inline, PDF linked).")]
    for analysis, group in groups.items():
        item = analyses[analysis].together
        names = folder.write_figure(resolve(item.draw)(group), f"all.{analysis}")
        blocks += [Heading(f"All {analysis} stores together"), Picture(names["png"], names["pdf"], item.caption)]
    for path, dataset in track(datasets.items(), "rendering stores", len(datasets), progress):
        blocks += store_section(path, dataset, stems[path], folder)
    written = [folder.write_text("index.md", markdown(blocks)), folder.write_text("index.html", html_page(blocks, title))]
    folder.finish()
    return Report(written[0], written[1], [folder.path / name for name in folder.files])


def store_section(path: Path, dataset: xr.Dataset, stem: str, folder: ReportFolder) -> list[Block]:
    """The blocks of one store: heading, provenance, key numbers and its figures (written to ``folder``)."""
    analysis = dataset.attrs["analysis"]
    found = registry()[analysis]
    blocks: list[Block] = [Heading(f"{stem} ({analysis})"), Text(f"Store `{path}`.")]
    blocks.append(Table(["provenance", ""], provenance_rows(dataset)))
    if found.numbers is not None:
        blocks.append(Table(["quantity", "value"], found.key_numbers(parts(found, dataset))))
    for item in found.figures:
        if not item.applies(dataset):
            continue
        figure = draw(item, dataset)
        names = folder.write_figure(figure, _figure_stem(stem, item.name))
        blocks.append(Picture(names["png"], names["pdf"], item.caption_of(dataset)))
    return blocks


def provenance_rows(dataset: xr.Dataset) -> list[tuple[str, str]]:
    """(what, value) for each provenance attr the store has; paths and hashes as code."""
    rows = []
    for key, name in PROVENANCE:
        if key in dataset.attrs:
            value = str(dataset.attrs[key])
            rows.append((name, f"`{value}`" if key in ("checkpoint", "checkpoint_b", "command") or "sha256" in key
                         else value))
    if "checkpoint_sha256" in dataset.coords and "checkpoint" in dataset.dims:  # a sweep: one row per checkpoint
        for name, sha in zip(dataset.checkpoint.values, dataset.checkpoint_sha256.values, strict=True):
            rows.append((f"checkpoint {name} sha256", f"`{sha}`"))
    return rows


def _groups(datasets: dict[Path, xr.Dataset], stems: dict[Path, str]) -> dict[str, dict[str, xr.Dataset]]:
    """{analysis: {label: Dataset}} of the analyses with two or more single-checkpoint stores; labels are
    checkpoint names, or store names where two stores share a checkpoint."""
    grouped: dict[str, dict[Path, xr.Dataset]] = {}
    for path, dataset in datasets.items():
        if "checkpoint" not in dataset.dims:
            grouped.setdefault(dataset.attrs["analysis"], {})[path] = dataset
    result = {}
    for analysis, members in grouped.items():
        if len(members) < 2:
            continue
        labels = [label(ds.attrs.get("checkpoint"), stems[path]) for path, ds in members.items()]
        if len(set(labels)) < len(labels):
            labels = [stems[path] for path in members]
        result[analysis] = dict(zip(labels, members.values(), strict=True))
    return result


def _unique_stems(paths: list[Path]) -> dict[Path, str]:
    """File stems for each store (its name less ``.zarr`` or ``.zarr.zip``), made unique with -2, -3, …"""
    stems, seen = {}, {}
    for path in paths:
        stem = path.name.removesuffix(SINGLE_FILE_SUFFIX).removesuffix(".zarr") or "store"
        seen[stem] = seen.get(stem, 0) + 1
        stems[path] = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
    return stems


def _figure_stem(stem: str, name: str) -> str:
    """STEM.NAME, or STEM alone when it already ends in .NAME (``dit.gap`` + ``gap`` → ``dit.gap``)."""
    return stem if stem == name or stem.endswith(f".{name}") else f"{stem}.{name}"
