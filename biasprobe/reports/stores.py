"""Render stores into figures (PNG and PDF) and an index page (Markdown and HTML) with provenance.

A store's ``analysis`` attr picks its figures and its key numbers from two registries,
:data:`FIGURES` and :data:`NUMBERS`; a new analysis plugs in with :func:`register`. Stores
with a ``checkpoint`` dimension (sweeps, comparisons) draw one curve per checkpoint.

>>> import biasprobe as bp
>>> bp.report(["dit-n10.gap.zarr", "dit-n10.jacobian.zarr"], "report")   # report/index.md, index.html
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from biasprobe.errors import InputError
from biasprobe.progress import track
from biasprobe.reports.folder import ReportFolder
from biasprobe.reports.page import Block, Heading, Picture, Table, Text, html_page, markdown
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


@dataclass(frozen=True)
class StoreFigure:
    """One figure drawn from a store: its short name (part of the file name), caption and drawing.

    ``draw`` takes the store's Dataset and returns a Figure; ``applies`` says whether the store
    has what the figure needs (the figure is skipped, and the page says so, when it does not).
    """

    name: str
    caption: str
    draw: Callable[[xr.Dataset], Figure]
    applies: Callable[[xr.Dataset], bool] = field(default=lambda dataset: True)


FIGURES: dict[str, list[StoreFigure]] = {}
"""The figures of each analysis, by the ``analysis`` attr of its stores."""

NUMBERS: dict[str, Callable[[xr.Dataset], list[tuple[str, str]]]] = {}
"""The key numbers of each analysis as (quantity, value) rows for the index page."""

TOGETHER: dict[str, StoreFigure] = {}
"""The overlay of several stores of one analysis: its ``draw`` and ``applies`` take {label: Dataset}."""


def register(
    analysis: str,
    figures: Sequence[StoreFigure],
    numbers: Callable[[xr.Dataset], list[tuple[str, str]]] | None = None,
    together: StoreFigure | None = None,
) -> None:
    """Make stores whose ``analysis`` attr is ``analysis`` render ``figures``, list ``numbers``, and,
    when a report has several such stores, draw them ``together`` in one figure."""
    FIGURES[analysis] = list(figures)
    if numbers is not None:
        NUMBERS[analysis] = numbers
    if together is not None:
        TOGETHER[analysis] = together


def label(path: str | os.PathLike | None, fallback: str = "denoiser") -> str:
    """A short name for a checkpoint: its file stem (or folder name)."""
    if not path:
        return fallback
    path = Path(str(path))
    return path.stem if path.suffix else path.name


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


# ------------------------------------------------------------------------ the analyses biasprobe writes


def _draw_gap(dataset: xr.Dataset) -> Figure:
    from biasprobe.figures.generalization import gap_figure

    return gap_figure(per_checkpoint(dataset))


def _gap_numbers(dataset: xr.Dataset) -> list[tuple[str, str]]:
    rows = [(f"average gap, {name}", f"{float(part.average_gap):.2f} dB over {part.sizes['sigma']} noise levels")
            for name, part in per_checkpoint(dataset).items()]
    if "images_per_split" in dataset:
        rows.append(("images per split (train, test)",
                     ", ".join(str(int(c)) for c in np.ravel(dataset.images_per_split.values)[:2])))
    return rows


def _draw_jacobian(dataset: xr.Dataset) -> Figure:
    from biasprobe.figures.jacobian import jacobian_figure

    return jacobian_figure(dataset)


def _draw_spectra(dataset: xr.Dataset) -> Figure:
    from biasprobe.figures.jacobian import spectrum_figure

    return spectrum_figure(per_checkpoint(dataset))


def _jacobian_numbers(dataset: xr.Dataset) -> list[tuple[str, str]]:
    from biasprobe.analyses.harmonic import gahb_summary

    rows = []
    for name, part in per_checkpoint(dataset).items():
        summary = gahb_summary(part) if part.sizes["rank"] >= 2 else None
        for s in range(part.sizes["sigma"]):
            at = part.isel(sigma=s)
            value = f"tr J {float(at.effective_dimension.mean()):.1f}"
            if summary is not None:
                verdict = summary.isel(sigma=s)
                value += (f"; harmonicity {float(verdict.mean_harmonicity):.2f}, adaptivity "
                          f"{float(verdict.adaptivity):.2f}: {verdict.verdict.item()}")
            rows.append((f"{name}, σ = {float(at.sigma):.3g}", value))
    return rows


def _draw_locality(dataset: xr.Dataset) -> Figure:
    from biasprobe.figures.locality import locality_figure

    return locality_figure(dataset)


def _draw_profiles(dataset: xr.Dataset) -> Figure:
    from biasprobe.figures.locality import locality_profile_figure

    return locality_profile_figure(per_checkpoint(dataset))


def _locality_numbers(dataset: xr.Dataset) -> list[tuple[str, str]]:
    rows = []
    for name, part in per_checkpoint(dataset).items():
        for s in range(part.sizes["sigma"]):
            at = part.isel(sigma=s).mean_distance.mean(("image", "head"))
            rows.append((f"{name}, σ = {float(part.sigma[s]):.3g}",
                         "mean attention distance per layer (px): " + ", ".join(f"{v:.1f}" for v in at.values)))
    return rows


def _draw_samples(dataset: xr.Dataset) -> Figure:
    from biasprobe.figures.generalization import nearest_figure

    return nearest_figure(dataset)


def _memorization_numbers(dataset: xr.Dataset) -> list[tuple[str, str]]:
    rows = [("samples", str(dataset.sizes["sample"]))]
    if "memorized_share" in dataset:
        threshold = dataset.memorized_share.attrs.get("threshold", "the threshold")
        rows += [(f"share copying a training image (similarity > {threshold})", f"{float(dataset.memorized_share):.0%}"),
                 ("median nearest similarity", f"{float(dataset.nearest_similarity.median()):.3f}")]
    return rows


def _draw_span(dataset: xr.Dataset) -> Figure:
    from biasprobe.figures.jacobian import span_fraction_figure

    return span_fraction_figure({label(dataset.attrs.get("checkpoint"), "model"): dataset})


def _span_numbers(dataset: xr.Dataset) -> list[tuple[str, str]]:
    centred = ", mean removed" if dataset.attrs.get("centred") else ""
    spans = f"{dataset.attrs.get('neighbours')} images{centred}; chance dim/d = {float(dataset.train_span_chance.mean()):.4f}"
    rows = [("spans", spans)]
    for k in dataset.top.values:
        train, held_out = (float(dataset[name].sel(top=k).mean()) for name in ("train_span_energy", "held_out_span_energy"))
        rows.append((f"mean ‖P e_j‖² over the top {k} of ∂D/∂y, training / held-out span", f"{train:.3f} / {held_out:.3f}"))
    return rows


def _draw_ideal(dataset: xr.Dataset) -> Figure:
    from biasprobe.figures.jacobian import span_fraction_figure

    return span_fraction_figure({f"ideal memorizer, σ = {float(sigma):g}": dataset.sel(sigma=[sigma])
                                 for sigma in dataset.sigma.values})


def _ideal_numbers(dataset: xr.Dataset) -> list[tuple[str, str]]:
    chance = float(dataset.train_span_chance.mean())
    images = f"{dataset.attrs.get('n_train')} of {dataset.attrs.get('data')} {dataset.attrs.get('subset')}"
    rows = [("training images", f"{images}; chance dim/d = {chance:.4f}")]
    for sigma in dataset.sigma.values:
        at = dataset.sel(sigma=sigma)
        train, held_out = (float(at[name].sel(top=10).mean()) if 10 in at.top else float("nan")
                           for name in ("train_span_energy", "held_out_span_energy"))
        rows.append((f"σ = {float(sigma):g}: mean max wᵢ; top 10 in training / held-out span",
                     f"{float(at.mean_max_posterior_weight):.3f}; {train:.3f} / {held_out:.3f}"))
    return rows


def _draw_comparison(dataset: xr.Dataset) -> Figure:
    from biasprobe.figures.comparison import comparison_figure

    return comparison_figure(dataset, (label(dataset.attrs.get("checkpoint"), "A"),
                                       label(dataset.attrs.get("checkpoint_b"), "B")))


def _compare_numbers(dataset: xr.Dataset) -> list[tuple[str, str]]:
    rows = [(f"top-{dataset.attrs.get('eigenspace_top', 'K')} Jacobian eigenspace overlap",
             f"{float(dataset.eigenspace_overlap):.3f}")]
    if "sample_similarity" in dataset:
        rows.append(("paired sample similarity (mean)", f"{float(dataset.sample_similarity.mean()):.3f}"))
    if "average_gap" in dataset:
        rows.append(("average gap, A / B", " / ".join(f"{float(v):.2f} dB" for v in dataset.average_gap.values)))
    return rows


def _swept(dataset: xr.Dataset) -> bool:
    return "checkpoint" in dataset.dims


def _single(dataset: xr.Dataset) -> bool:
    return "checkpoint" not in dataset.dims


def _same_first_sigma(datasets: dict[str, xr.Dataset]) -> bool:
    first = float(next(iter(datasets.values())).sigma[0])
    return all(np.isclose(ds.sigma.values, first, rtol=1e-6).any() for ds in datasets.values())


def _draw_gaps(datasets: dict[str, xr.Dataset]) -> Figure:
    from biasprobe.figures.generalization import gap_figure

    return gap_figure(datasets)


def _draw_spectra_together(datasets: dict[str, xr.Dataset]) -> Figure:
    from biasprobe.figures.jacobian import spectrum_figure

    return spectrum_figure(datasets)


def _draw_profiles_together(datasets: dict[str, xr.Dataset]) -> Figure:
    from biasprobe.figures.locality import locality_profile_figure

    return locality_profile_figure(datasets)


register("gap", [StoreFigure("gap", "Output PSNR on training and test images and their gap against the noise "
                             "level (An et al. Fig. 2)", _draw_gap)], _gap_numbers,
         StoreFigure("gap", "The gap of every store, one colour per checkpoint (An et al. Fig. 2)", _draw_gaps))
register("jacobian", [
    StoreFigure("jacobian", "Jacobian eigenvectors at the first image and σ, spectrum and GAHB metrics "
                "(An et al. Figs. 1 and 3)", _draw_jacobian, _single),
    StoreFigure("spectrum", "Jacobian eigenvalue spectra, one curve per checkpoint", _draw_spectra, _swept),
], _jacobian_numbers, StoreFigure("spectrum", "Jacobian eigenvalue spectra of every store at its first σ "
                                  "(An et al. Fig. 3)", _draw_spectra_together))
register("locality", [
    StoreFigure("locality", "Attention maps (An et al. Fig. 4, when stored) above the mean attention distance "
                "per layer and per head", _draw_locality, _single),
    StoreFigure("profile", "Mean attention distance per layer, one line per checkpoint", _draw_profiles, _swept),
], _locality_numbers, StoreFigure("profile", "Mean attention distance per layer of every store, at the first σ "
                                  "of the first", _draw_profiles_together, _same_first_sigma))
register("memorization", [StoreFigure("samples", "Samples (top) above their nearest training images, with the "
                                      "mean-removed cosine similarity", _draw_samples)], _memorization_numbers)
register("training-span", [StoreFigure("span", "Energy of each eigenvector of the denoiser's Jacobian in the span "
                                       "of the training images, the held-out control span and chance",
                                       _draw_span, _single)], _span_numbers)
register("ideal-memorizer", [StoreFigure("span", "The ideal memorizer (the posterior mean of the training images): "
                                         "energy of each eigenvector of its Jacobian in the span of the training "
                                         "images and in the held-out control span, at each σ", _draw_ideal)],
         _ideal_numbers)
register("compare", [StoreFigure("compare", "Two checkpoints side by side: gap, Jacobian spectra, attention "
                                 "locality and samples from the same seeds", _draw_comparison)], _compare_numbers)


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

    Each store is opened, its figures are chosen by its ``analysis`` attr (:data:`FIGURES`) and
    saved as PNG and PDF, and the index shows them inline with the store's provenance and key
    numbers. ``out`` must be new, empty, or a folder an earlier report wrote (see
    :class:`~biasprobe.reports.folder.ReportFolder`); ``on_file`` is called with each file written.
    """
    paths = [Path(store) for store in stores]
    if not paths:
        raise InputError("no stores given: pass one or more .zarr stores written by a biasprobe analysis")
    datasets = {path: open_store(path) for path in paths}  # every store must open before anything is written
    unknown = {path: ds.attrs.get("analysis") for path, ds in datasets.items() if ds.attrs.get("analysis") not in FIGURES}
    if unknown:
        path, analysis = next(iter(unknown.items()))
        raise InputError(f"{path} holds a {analysis or 'unlabelled'} store, which has no report figures; "
                         f"reports render {', '.join(sorted(FIGURES))}")
    folder = ReportFolder(out, on_file)
    stems = _unique_stems(paths)
    groups = {analysis: group for analysis, group in _groups(datasets, stems).items()
              if analysis in TOGETHER and TOGETHER[analysis].applies(group)}
    planned = [f"{_figure_stem(stems[p], f.name)}.{fmt}" for p, ds in datasets.items()
               for f in FIGURES[ds.attrs["analysis"]] if f.applies(ds) for fmt in ("png", "pdf")]
    planned += [f"all.{analysis}.{fmt}" for analysis in groups for fmt in ("png", "pdf")]
    folder.check([*planned, "index.md", "index.html"])
    from biasprobe import __version__

    blocks: list[Block] = [Heading(title, 1), Text(
        f"Rendered by biasprobe {__version__} from {len(paths)} store{'s' * (len(paths) != 1)}; every figure is "
        "drawn from its store alone (PNG inline, PDF linked).")]
    for analysis, group in groups.items():
        item = TOGETHER[analysis]
        names = folder.write_figure(item.draw(group), f"all.{analysis}")
        blocks += [Heading(f"All {analysis} stores together"), Picture(names["png"], names["pdf"], item.caption)]
    for path, dataset in track(datasets.items(), "rendering stores", len(datasets), progress):
        blocks += store_section(path, dataset, stems[path], folder)
    written = [folder.write_text("index.md", markdown(blocks)), folder.write_text("index.html", html_page(blocks, title))]
    folder.finish()
    return Report(written[0], written[1], [folder.path / name for name in folder.files])


def store_section(path: Path, dataset: xr.Dataset, stem: str, folder: ReportFolder) -> list[Block]:
    """The blocks of one store: heading, provenance, key numbers and its figures (written to ``folder``)."""
    analysis = dataset.attrs["analysis"]
    blocks: list[Block] = [Heading(f"{stem} ({analysis})"), Text(f"Store `{path}`.")]
    blocks.append(Table(["provenance", ""], provenance_rows(dataset)))
    if analysis in NUMBERS:
        blocks.append(Table(["quantity", "value"], NUMBERS[analysis](dataset)))
    for item in FIGURES[analysis]:
        if not item.applies(dataset):
            continue
        figure = item.draw(dataset)
        names = folder.write_figure(figure, _figure_stem(stem, item.name))
        blocks.append(Picture(names["png"], names["pdf"], item.caption))
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
    """File stems for each store (its name less ``.zarr``), made unique with -2, -3, …"""
    stems, seen = {}, {}
    for path in paths:
        stem = path.name.removesuffix(".zarr") or "store"
        seen[stem] = seen.get(stem, 0) + 1
        stems[path] = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
    return stems


def _figure_stem(stem: str, name: str) -> str:
    """STEM.NAME, or STEM alone when it already ends in .NAME (``dit.gap`` + ``gap`` → ``dit.gap``)."""
    return stem if stem == name or stem.endswith(f".{name}") else f"{stem}.{name}"
