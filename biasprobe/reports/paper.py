"""The ``paper`` recipe: An et al.'s figures and tables, and Kadkhodaie et al.'s two-model figure, over a zoo.

A recipe is a list of :class:`Item` (a figure or table of the paper). Each item names the models it
needs as :class:`Cell` (family, attention variant, N, subset), the analysis it reads and that
analysis's parameters. :func:`paper_report` finds the zoo's models for every cell, finds or
computes their stores (cached by checkpoint sha256 and parameters; ``recompute`` forces), and
draws each item from its stores alone. An item whose cells the zoo lacks says so plainly, by name;
an item with none of its models is not drawn at all. Nothing is faked: every number on the page
comes from a store.

The zoo's models and manifest are read by :mod:`biasprobe.reports.zoo`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from biasprobe.analyses.base import registered
from biasprobe.errors import InputError
from biasprobe.progress import track
from biasprobe.reports.claims import SPAN_TOP, check_claims, ideal_in_span, memorizer_check, memorizer_sigma, top_mean
from biasprobe.reports.folder import ReportFolder
from biasprobe.reports.page import Block, Heading, Picture, Table, Text, html_page, markdown
from biasprobe.reports.zoo import (
    AT_MEMORIZER_SIGMA,
    FAMILY_NAMES,
    IDEAL,
    MEMORIZERS,
    MID_N,
    N_VALUES,
    SEEDS,
    Cell,
    TrainedSoFar,
    ZooModel,
    read_zoo,
    zoo_training,
)
from biasprobe.store import SINGLE_FILE_SUFFIX, pack, save, store_exists
from biasprobe.store import open as open_store

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# ------------------------------------------------------------------------------------------ analyses


@dataclass(frozen=True)
class Settings:
    """The analysis parameters of the recipe (part of every cached store's key).

    ``k`` images per split for the gap (the paper's K = 300) and for the nearest-image search; the gap
    of scheduled models at the diffusion steps ``gap_timesteps`` (the paper's Fig. 2 runs t = 0, 20, …,
    980; here nine steps, dense where the gap peaks, t ≤ 200 being σ ≲ 0.7 for the linear schedule),
    of blind ones at 20 σ from 0.01 to 1. ``k`` = 50 and nine steps keep the paper zoo's 44 stores
    within about half an hour on a 2-core CPU (measured: 32 minutes under load; each gap store records
    its standard errors). Jacobians and
    attention at one noise level ``sigma`` ([0, 1] scale) on the first test image(s); the raw output
    (ε̂ in native units) for scheduled models, as the paper's eigenvalues above 1 imply, the denoiser
    for blind ones. The training-span store of a Jacobian compares its eigenvectors with the span of
    the training images, against the span of the ``held_out`` first test images as the control.

    The memorizers item measures the span a second time at the memorizer σ: the smallest σ of
    ``memorizer_sigmas`` (fixed before the trained models' stores at any σ but 0.1 were computed) at which
    the ideal memorizer of every N = 10 model's training set has spread posterior weights and passes the
    span rule (:func:`biasprobe.reports.claims.memorizer_sigma`; its ideal-memorizer stores hold the report's
    σ and this grid, with the weights at the ``k`` first test images). Every grid σ is inside the DDPM/DiT
    schedule's range (σ ≤ 78.7 on the [0, 1] scale for the linear 1000-step schedule); the bias-free UNets
    are trained at σ ≤ 1 only."""

    k: int = 50
    gap_timesteps: tuple[int, ...] = (0, 10, 20, 40, 60, 100, 200, 400, 980)
    sigma: float = 0.1
    locality_images: int = 8
    samples: int = 8
    sampler_steps: int = 100
    held_out: int = 300
    memorizer_sigmas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)

    def used_by(self, kind: str) -> dict:
        """The parameters the analysis ``kind`` reads (a store's key depends on these alone)."""
        names = {"gap": ("k", "gap_timesteps"), "jacobian": ("sigma",), "locality": ("sigma", "locality_images"),
                 "memorization": ("samples", "sampler_steps"), "training-span": ("sigma", "held_out"),
                 IDEAL: ("sigma", "k", "held_out", "memorizer_sigmas")}.get(kind, tuple(asdict(self)))
        return {name: getattr(self, name) for name in names}

    def key(self, kind: str, model: ZooModel) -> str:
        """The cache key of the store of ``kind`` for ``model``: sha256 of the checkpoint and the parameters
        that analysis reads."""
        text = json.dumps({"kind": kind, "sha256": model.sha256, **self.used_by(kind), **DERIVED_OPTIONS.get(kind, {})},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


DERIVED = {"training-span": "jacobian"}
"""Analyses computed from another analysis's store of the same model (and its images), not from the model."""
DERIVED_OPTIONS = {"training-span": {"centred": True, "neighbours": 10}}
"""The options of each derived analysis (part of its stores' cache key)."""


def _gap_inputs(settings, denoiser, train, test, held_out, source):
    count = min(settings.k, len(train))
    levels = {"timesteps": list(settings.gap_timesteps)} if denoiser.schedule is not None else {}
    return (denoiser, train[:count], test[:count]), {"seed": 0, **levels}


def _jacobian_inputs(settings, denoiser, train, test, held_out, source):
    output = "denoised" if denoiser.sigma_to_t(0.5) is None else "raw"  # blind models have no raw output
    return (denoiser, test[:1], [settings.sigma]), {"output": output, "seed": 0}


RECIPE_INPUTS: dict[str, Callable] = {
    "gap": _gap_inputs,
    "jacobian": _jacobian_inputs,
    "locality": lambda settings, denoiser, train, test, held_out, source: (
        (denoiser, test[: settings.locality_images], [settings.sigma]), {"save_maps": True, "seed": 0}),
    "memorization": lambda settings, denoiser, train, test, held_out, source: (
        (denoiser, settings.samples, train), {"steps": settings.sampler_steps, "seed": 0}),
    "training-span": lambda settings, denoiser, train, test, held_out, source: (
        (source, train, held_out), DERIVED_OPTIONS["training-span"]),
    IDEAL: lambda settings, denoiser, train, test, held_out, source: (
        (train, test[:1], held_out, sorted({settings.sigma, *settings.memorizer_sigmas})),
        {"weight_images": test, "seed": 0, **DERIVED_OPTIONS["training-span"]}),
}
"""The recipe's inputs of each registered analysis it runs: (settings, denoiser, training images, test images,
held-out images, source store) -> (positional inputs, keywords) of :func:`~biasprobe.analyses.base.registered`
(kind)."""


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one CPU thread. The locality stores are not committed (their attention maps are large):
    a fresh clone recomputes them, and their sums must not depend on the machine's thread count for
    Fig. 4 to be drawn byte for byte as committed."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def compute(kind: str, model: ZooModel, settings: Settings, device: str | None = None,
            source: xr.Dataset | None = None) -> xr.Dataset:
    """Run analysis ``kind`` (gap, jacobian, locality, memorization) on ``model`` with ``settings``.

    ``training-span`` is derived from the model's jacobian store (``source``; computed when None):
    :func:`~biasprobe.analyses.span.jacobian_memorization` with centred spans of its training
    images and of the ``settings.held_out`` first test images (the control). :data:`IDEAL` reads the
    model's training images only (the checkpoint gives the image shape):
    :func:`~biasprobe.analyses.ideal.ideal_memorizer_span` at ``settings.sigma`` and every σ of
    ``settings.memorizer_sigmas``, on the jacobian's test image, with the weights at the ``settings.k``
    first test images."""
    from biasprobe import data
    from biasprobe.formats import load

    if kind not in RECIPE_INPUTS:
        raise InputError(f"the paper recipe has no analysis {kind!r}")
    denoiser = load(model.path, device=device)
    channels, size, _ = denoiser.image_shape
    options = {"size": size, "channels": channels}
    train = data.load(model.data, "train", model.n_train, subset=model.subset, seed=model.seed, **options)
    test = data.load(model.data, "test", settings.k, subset="all", **options)
    if kind in DERIVED:
        source = source if source is not None else compute(DERIVED[kind], model, settings, device)
    held_out = data.load(model.data, "test", settings.held_out, subset="all", **options) \
        if kind in ("training-span", IDEAL) else None
    inputs, keywords = RECIPE_INPUTS[kind](settings, denoiser, train, test, held_out, source)
    with _one_thread() if kind == "locality" else contextlib.nullcontext():
        result = registered(kind)(*inputs, **keywords)
    if kind == "training-span":
        result.attrs.update(source_recipe_key=source.attrs.get("recipe_key", ""))
    elif kind == IDEAL:
        result.attrs.update(data=model.data, subset=model.subset, training_seed=model.seed,
                            grid=list(settings.memorizer_sigmas))
    if kind != IDEAL and result.attrs.get("checkpoint_sha256") != model.sha256:  # the ideal reads no checkpoint
        raise InputError(f"{model.path} does not match the sha256 its zoo manifest gives for {model.name}; "
                         "retrain or fix the manifest")
    result.attrs.update(zoo_model=model.name, n_train=model.n_train, recipe_key=settings.key(kind, model),
                        recipe_settings=json.dumps(settings.used_by(kind)))
    return result


# ------------------------------------------------------------------------------------------ items


@dataclass(frozen=True)
class Item:
    """A figure or table of the paper: the models it needs, the analysis it reads, and how it is drawn.

    ``draw`` gets {cell: [Dataset per seed]} of the cells the zoo has and returns a Figure, or
    None when what it has cannot make the figure; ``table`` (optional) gives (header, rows)."""

    key: str
    title: str
    paper: str
    analysis: str
    cells: tuple[Cell, ...]
    draw: Callable[[dict[Cell, list[xr.Dataset]]], Figure | None]
    table: Callable[[dict[Cell, list[xr.Dataset]]], tuple[list[str], list[list[str]]]] | None = field(default=None)


def _mean_over_seeds(datasets: list[xr.Dataset]) -> xr.Dataset:
    if len(datasets) == 1:
        return datasets[0]
    keep = ["gap", "gap_sem", "mean_psnr", "average_gap"]
    return xr.concat([ds[keep] for ds in datasets], dim="seed", coords="minimal", compat="override").mean("seed")


def _draw_gaps(found: dict[Cell, list[xr.Dataset]]) -> Figure:
    from biasprobe.figures.generalization import gap_figure

    return gap_figure({_cell_label(cell, runs): _mean_over_seeds(runs) for cell, runs in found.items()})


def _cell_label(cell: Cell, runs: list[xr.Dataset]) -> str:
    n = f"N={cell.n}" if cell.n is not None else f"N={runs[0].attrs.get('n_train', 'max')}"
    variant = "" if cell.variant == "global" else f" {cell.variant}"
    seeds = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
    return f"{FAMILY_NAMES.get(cell.family, cell.family)}{variant} {n}{seeds}"


def _gap_table(found: dict[Cell, list[xr.Dataset]]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for cell, runs in found.items():
        gaps = np.array([float(ds.average_gap) for ds in runs])
        spread = f" ± {gaps.std(ddof=1):.2f}" if len(gaps) > 1 else ""
        rows.append([_cell_label(cell, runs), f"{gaps.mean():.2f}{spread}", str(len(gaps))])
    return ["model", "average gap (dB), mean ± s.d. over seeds", "seeds"], rows


def _draw_gap_bars(found: dict[Cell, list[xr.Dataset]]) -> Figure:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(4.0, 1.1 * len(found) + 1.5), 3.4), layout="constrained")
    axis = figure.subplots()
    for position, (cell, runs) in enumerate(found.items()):
        gaps = np.array([float(ds.average_gap) for ds in runs])
        axis.bar(position, gaps.mean(), color="0.6" if cell.variant == "global" else "C0")
        axis.plot(np.full(len(gaps), position), gaps, "o", color="k", markersize=3)
    axis.set_xticks(range(len(found)), [_cell_label(cell, runs).replace(" N=", "\nN=") for cell, runs in found.items()],
                    fontsize=8)
    axis.set_ylabel("average gap (dB)")
    axis.axhline(0, color="0.5", linewidth=0.8)
    return figure


def _draw_eigenvectors(found: dict[Cell, list[xr.Dataset]]) -> Figure:
    from matplotlib.figure import Figure

    from biasprobe.figures.jacobian import eigenvector_figure, spectrum_figure

    first = {_cell_label(cell, runs): runs[0] for cell, runs in found.items()}
    figure = Figure(figsize=(9, 2.0 * len(first) + 3.2), layout="constrained")
    rows = figure.subfigures(len(first) + 1, 1, height_ratios=[3.2] + [2.0] * len(first))
    spectrum_figure(first, figure=rows[0])
    for row, (name, dataset) in zip(rows[1:], first.items()):
        eigenvector_figure(dataset, figure=row)
        row.suptitle(f"{name}: eigenvectors of the {dataset.attrs.get('output', 'denoised')} output, "
                     f"σ = {float(dataset.sigma[0]):g}", fontsize=9)
    return figure


def _draw_attention(found: dict[Cell, list[xr.Dataset]]) -> Figure:
    from matplotlib.figure import Figure

    from biasprobe.figures.locality import attention_maps_figure

    figure = Figure(figsize=(13, 4.4 * len(found)), layout="constrained")
    rows = figure.subfigures(len(found), 1, squeeze=False)[:, 0]
    for row, (cell, runs) in zip(rows, found.items()):
        attention_maps_figure(runs[0], figure=row)
        row.suptitle(f"{_cell_label(cell, runs[:1])}: attention maps, σ = {float(runs[0].sigma[0]):g}", fontsize=10)
    return figure


def _draw_twins(found: dict[Cell, list[xr.Dataset]]) -> Figure | None:
    import torch
    from matplotlib.figure import Figure

    from biasprobe.analyses.memorization import paired_similarity

    pairs = {}
    for cell, runs in found.items():
        twin = next((c for c in found if c.n == cell.n and c.subset == "s2"), None)
        if cell.subset == "s1" and twin is not None:
            pairs[cell.n] = (runs[0], found[twin][0])
    if not pairs:
        return None
    count = min(6, min(ds.sizes["sample"] for pair in pairs.values() for ds in pair))
    figure = Figure(figsize=(1.2 * count + 1.2, 2.6 * len(pairs)), layout="constrained")
    rows = figure.subfigures(len(pairs), 1, squeeze=False)[:, 0]
    for row, (n, (first, second)) in zip(rows, pairs.items()):
        similarity = paired_similarity(*(torch.from_numpy(ds.sample_image.values) for ds in (first, second)))
        axes = row.subplots(2, count, squeeze=False)
        for r, dataset in enumerate((first, second)):
            for i in range(count):
                picture = np.clip(dataset.sample_image[i].values.transpose(1, 2, 0), 0, 1)
                axes[r, i].imshow(picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1)
                axes[r, i].set_xticks([])
                axes[r, i].set_yticks([])
            axes[r, 0].set_ylabel(("S1", "S2")[r])
        for i in range(count):
            axes[1, i].set_xlabel(f"{similarity[i]:.2f}", fontsize=8)
        row.suptitle(f"N = {n}: samples of the S1 and S2 models from the same seeds (paired similarity "
                     f"below, mean {similarity.mean():.2f})", fontsize=9)
    return figure


SPAN_DRAWN = 20
"""Ranks of the denoiser's Jacobian drawn in the memorizers figure."""


def _memorizer_cells() -> tuple[Cell, ...]:
    cells = [Cell(family, 10, variant, subset, analysis=kind) for family, variant, subset in MEMORIZERS
             for kind in ("memorization", None, IDEAL, AT_MEMORIZER_SIGMA)]
    return (*cells, *(Cell(family, None, variant, analysis=kind)
                      for family, variant in dict.fromkeys(m[:2] for m in MEMORIZERS) for kind in (None, AT_MEMORIZER_SIGMA)))


def _memorizer_checks(found: dict[Cell, list[xr.Dataset]], span_kind: str | None = None):
    """The :class:`~biasprobe.reports.claims.MemorizerCheck` of every N = 10 model the item has a store of, from
    the span stores of ``span_kind`` (None: the report's σ; :data:`AT_MEMORIZER_SIGMA`: the memorizer σ)."""
    checks = []
    for family, variant, subset in MEMORIZERS:
        share = found.get(Cell(family, 10, variant, subset, analysis="memorization"))
        span = found.get(Cell(family, 10, variant, subset, analysis=span_kind))
        contrast = found.get(Cell(family, None, variant, analysis=span_kind))
        if share or span:
            checks.append(memorizer_check(Cell(family, 10, variant, subset), share[0] if share else None,
                                          span[0] if span else None, contrast[0] if contrast else None))
    return checks


def _draw_memorizers(found: dict[Cell, list[xr.Dataset]]) -> Figure | None:
    from matplotlib.figure import Figure

    from biasprobe.figures.jacobian import span_fraction_figure

    checks = _memorizer_checks(found)
    second = {c.cell: c for c in _memorizer_checks(found, AT_MEMORIZER_SIGMA)}
    if not checks:
        return None
    groups = list(dict.fromkeys((c.cell.family, c.cell.variant) for c in checks if c.span_store is not None))
    columns = min(3, 1 + len(groups))
    rows = -(-(1 + len(groups)) // columns)
    figure = Figure(figsize=(3.6 * columns, 4.9 * rows), layout="constrained")
    panels = figure.subfigures(rows, columns, squeeze=False).ravel()
    bars = panels[0].subplots()
    for position, check in enumerate(checks):
        if check.share is not None:
            bars.bar(position, check.share, color="C3" if check.share >= check.share_needed else "0.6")
            bars.text(position, check.share + 0.02, f"{check.share:.2f}", ha="center", va="bottom", fontsize=7)
        else:
            bars.text(position, 0.02, "no store", rotation=90, ha="center", va="bottom", fontsize=7)
    bars.axhline(checks[0].share_needed, color="k", linestyle="--", linewidth=0.8)
    bars.set_xticks(range(len(checks)), [c.label.replace(" N=", "\nN=") for c in checks], fontsize=7, rotation=30)
    bars.set_ylim(0, 1.08)
    bars.set_ylabel("memorized share of samples")
    bars.set_title("samples that copy a training image", fontsize=9)
    for panel, (family, variant) in zip(panels[1:], groups):
        group = [c for c in checks if (c.cell.family, c.cell.variant) == (family, variant) and c.span_store is not None]
        group += [second[c.cell] for c in group if c.cell in second and second[c.cell].span_store is not None]
        at = lambda store: f", σ = {float(store.sigma[0]):g}"
        memorizers = {f"N=10 {c.cell.subset.upper()}{at(c.span_store)}": c.span_store for c in group}
        contrasts = {f"N={c.contrast_store.attrs.get('n_train')} (10 nearest){at(c.contrast_store)}": c.contrast_store
                     for c in group if c.contrast_store is not None}
        span_fraction_figure(memorizers, contrasts, ranks=SPAN_DRAWN, figure=panel)
        variant_text = "" if variant == "global" else f" {variant}"
        panel.suptitle(f"{FAMILY_NAMES.get(family, family)}{variant_text}: centred spans", fontsize=9)
    return figure


def _trained_sigma_max(store: xr.Dataset) -> float | None:
    """The largest σ a blind model was trained at (its store's provenance), None when not recorded or when the
    model has a schedule (trained at every step of it; its training record's ``sigma_max`` is unused)."""
    try:
        architecture = json.loads(store.attrs.get("architecture", "{}"))
    except ValueError:
        return None
    value = architecture.get("training", {}).get("sigma_max")
    return None if value is None or architecture.get("schedule") is not None else float(value)


def _memorizers_table(found: dict[Cell, list[xr.Dataset]]) -> tuple[list[str], list[list[str]]]:
    """Per N = 10 model a row at the report's σ and one at the memorizer σ; above them, the ideal memorizer of
    each training set at both σ (the known answer: its check is the span part of the rule against its held-out
    span, with the mean max posterior weight)."""
    number = lambda value: "—" if value is None else f"{value:.3f}"
    first, second = _memorizer_checks(found), {c.cell: c for c in _memorizer_checks(found, AT_MEMORIZER_SIGMA)}
    level = lambda checks: next((float(c.span_store.sigma[0]) for c in checks if c.span_store is not None), None)
    sigmas = [s for s in (level(first), level(second.values())) if s is not None]

    def row(c, sigma: float | None) -> list[str]:
        trained = _trained_sigma_max(c.span_store) if c.span_store is not None else None
        beyond = f" (trained at σ ≤ {trained:g})" if trained is not None and sigma is not None and sigma > trained else ""
        return [c.label, "—" if sigma is None else f"{sigma:g}{beyond}", number(c.share), number(c.denoised_cosine), number(c.top_eigenvalue),
                number(c.span), number(c.held_out), number(c.chance),
                "—" if c.contrast is None else f"{c.contrast:.3f} (N={c.contrast_n})", number(c.raw_top), c.verdict]

    ideals = {}
    for family, variant, subset in MEMORIZERS:
        for store in found.get(Cell(family, 10, variant, subset, analysis=IDEAL), []):
            ideals.setdefault((store.attrs.get("data"), store.attrs.get("subset"), store.attrs.get("training_seed"),
                               store.attrs.get("n_train")), store)
    rows = []
    for (_, subset, _, n), ideal in ideals.items():
        for sigma in sigmas:
            if not np.isclose(ideal.sigma.values, sigma).any():
                continue
            at = ideal.sel(sigma=sigma, method="nearest")
            passes = "passes" if ideal_in_span(ideal, float(at.sigma)) else "fails"
            rows.append([f"ideal memorizer ({str(subset).upper()}'s {n} images)", f"{sigma:g}", "—",
                         number(float(at.nearest_train_cosine.mean())),
                         number(float(at.denoiser_eigenvalue.isel(denoiser_rank=0).mean())),
                         number(top_mean(at, "train_span_fraction")), number(top_mean(at, "held_out_span_fraction")),
                         number(float(at.train_span_chance.mean())), "—", "—",
                         f"reference: mean max wᵢ {float(at.mean_max_posterior_weight):.2f}; in span: {passes}"])
    for c in first:
        if c.span_store is not None or c.share is not None:
            rows.append(row(c, level(first)))
        if c.cell in second and second[c.cell].span_store is not None:
            rows.append(row(second[c.cell], float(second[c.cell].span_store.sigma[0])))
    k = f"top {SPAN_TOP}"
    return (["model", "σ", "memorized share", "D(y) to nearest training image (cosine)", "λ₀ of ∂D/∂y",
             f"{k}: training span", f"{k}: held-out span", "chance", f"{k}: largest-N model", f"raw output's {k}",
             "check"], rows)


def _cells(family: str, ns: Sequence[int | None], variant: str = "global", seeds: int = 1, subset: str = "s1"):
    return tuple(Cell(family, n, variant, subset, seeds) for n in ns)


def _seeds(n: int | None) -> int:
    return SEEDS if n == MID_N else 1

PAPER: tuple[Item, ...] = (
    Item("fig1", "Fig. 1 — Jacobian eigenvectors of three denoisers",
         "UNet eigenvectors are smooth oscillations whose frequency rises as λ falls; DiT's are sparse isolated "
         "pixels (bias-free UNet λ0 = 1.73, DDPM UNet λ0 = 3.47, DiT λ0 = 9.83).",
         "jacobian", (Cell("unet-bf"), Cell("unet-ddpm"), Cell("dit")), _draw_eigenvectors),
    Item("fig2", "Fig. 2 — PSNR on training and test images against the diffusion step, and the gap",
         "Average gaps at N = 10³ / 10⁴ / 10⁵: UNet 13.95 / 5.50 / 0.06 dB, DiT 7.49 / 0.82 / 0.03 dB (three "
         "shuffles each); the gap peaks at small t. Here 3·10⁴ stands for 10⁵.",
         "gap", tuple(Cell(family, n, seeds=_seeds(n)) for family in ("unet-ddpm", "dit") for n in N_VALUES),
         _draw_gaps, _gap_table),
    Item("fig3", "Fig. 3 — eigenvalue spectra and eigenvectors at small and large N",
         "UNet at N = 10: a few huge eigenvalues (λ0 = 65.2) and eigenvectors that look like training images; "
         "at N = 10⁵ smooth decay and harmonic eigenvectors. DiT: neither at any N (λ0 = 16.7 and 7.8).",
         "jacobian", (Cell("unet-ddpm", 10), Cell("unet-ddpm"), Cell("dit", 10), Cell("dit")), _draw_eigenvectors),
    Item("fig4", "Fig. 4 — attention maps of layers 2, 4, …, 12 against N",
         "With larger N the maps show sharper diagonal bands: attention confined to a neighbourhood (no number "
         "given; colour map clipped to [0, 0.1]).",
         "locality", _cells("dit", (10, 1000, None)), _draw_attention),
    Item("fig6", "Fig. 6 — average gap, DiT against DiT with local attention (windows 3…13 in layers 1-6)",
         "Local attention cuts the gap by 6-17 % at N = 10³ and 25-45 % at 10⁴, nothing at 10⁵ "
         "(CelebA XS/1: 7.49 → 6.56, 0.80 → 0.57, 0.01 → 0.01 dB). FID (Table 1) is replaced by the gap: "
         "no Inception weights offline.",
         "gap", tuple(Cell("dit", n, variant, seeds=_seeds(n)) for n in N_VALUES for variant in ("global", "local")),
         _draw_gap_bars, _gap_table),
    Item("table2", "Fig. 7 / Table 2 — where the local layers go",
         "Head (the first layers) gives the smallest gap; mix and tail can be worse than no local attention; "
         "Local* (nine local layers) is reported beside them. FID columns replaced by the gap.",
         "gap", tuple(Cell("dit", MID_N, v, seeds=SEEDS if v in ("global", "local") else 1)
                      for v in ("global", "local", "mix", "tail", "local*")), _draw_gap_bars, _gap_table),
    Item("table3", "Fig. 8 / Table 3 — the same window budget arranged differently",
         "(5)×6 against (3,3,5,5,7,7) changes little; smaller windows help at N = 10⁴, larger ones hurt. "
         "FID columns replaced by the gap.",
         "gap", tuple(Cell("dit", MID_N, v) for v in ("global", "windows 5×6", "windows 3,3,5,5,7,7")),
         _draw_gap_bars, _gap_table),
    Item("twins", "Kadkhodaie et al. — samples of the S1 and S2 twins against N",
         "Bias-free UNets on disjoint halves S1 and S2 give different samples (each a copy of its own training "
         "images) at small N and nearly the same samples (cosine ≈ 1) at large N.",
         "memorization", tuple(Cell("unet-bf", n, subset=s) for n in N_VALUES for s in ("s1", "s2")), _draw_twins),
    Item("memorizers", "Memorizers — do the N = 10 models copy training images, and do their top Jacobian "
         "eigenvectors lie in the training span?",
         "Trained on few images, a denoiser samples copies of them (Kadkhodaie et al.) and its Jacobian's top "
         "eigenvectors look like training images (An et al. Fig. 3, UNet at N = 10). Here: the share of samples "
         "within similarity 0.95 of a training image, and ‖P e_j‖², the energy of the denoiser Jacobian's "
         "eigenvector e_j in the span of the training images with their mean removed (docs/methods/jacobian.md), "
         "against the held-out span, chance and the largest-N model of the same family. Read with care: the "
         "ideal memorizer's Jacobian, J = Σᵢ wᵢ (xᵢ − D)(xᵢ − D)ᵀ / σ², lies in the training span only where its "
         "posterior weights wᵢ spread over several images; at the stores' σ a noisy test image is so close to one "
         "training image that the weights are one-hot and J ≈ 0 (computed for dit-n10's ten images: max wᵢ = "
         "1.0000 at σ = 0.1-0.5, 0.96 at σ = 2), so the span test has little to find at this σ (a review finding "
         "after the rule was fixed; the rule is kept). So the span is measured a second time, by the same rule, at "
         "the memorizer σ: the smallest σ of the grid 0.5, 1, 2, 4, 8 (fixed before any trained model's store at "
         "those σ was computed) at which the ideal memorizer of each N = 10 model's training images — the exact "
         "posterior mean, analysed like the models, whose rows above the models' are the known answer — has a mean "
         "max posterior weight ≤ 0.5 over the test images and its top eigenvectors pass the span part of the rule "
         "against its held-out span (docs/reports.md). Each model has a row at each σ. The table also shows the "
         "other end of the spectrum (the raw output's top eigenvectors, ∂D/∂y's bottom ones), which An et al. "
         "decompose.",
         "training-span", _memorizer_cells(), _draw_memorizers, _memorizers_table),
)
"""The items of ``biasprobe report paper``, in the paper's order."""


def paper_items(keys: Sequence[str] | None = None) -> tuple[Item, ...]:
    """The items of :data:`PAPER` with these keys (all of them for None), in the paper's order."""
    if keys is None:
        return PAPER
    known = {item.key for item in PAPER}
    unknown = [key for key in keys if key.strip() not in known]
    if unknown:
        raise InputError(f"no paper item {unknown[0]!r}; " + "{only} takes " + ", ".join(item.key for item in PAPER),
                         parameters=["only"])
    return tuple(item for item in PAPER if item.key in {key.strip() for key in keys})


# ------------------------------------------------------------------------------------------ the report


def paper_report(
    zoo: str | os.PathLike = "data/zoo",
    out: str | os.PathLike = "reports/paper",
    *,
    recompute: bool = False,
    device: str | None = None,
    settings: Settings | None = None,
    items: Sequence[Item] = PAPER,
    progress: bool = False,
    on_file: Callable[[Path], None] | None = None,
):
    """Render the paper's items from the zoo at ``zoo`` into ``out`` (figures, index.md, index.html).

    Stores are cached in ``out/stores`` by checkpoint sha256 and :class:`Settings`; ``recompute``
    recomputes them from the checkpoints. A run of every item removes the cached stores it did not use
    (of checkpoints since retrained, or of other settings); a run of some items keeps them. Returns the :class:`~biasprobe.reports.stores.Report`.
    """
    from biasprobe import __version__
    from biasprobe.reports.stores import Report

    settings = settings or Settings()
    models = read_zoo(zoo)
    folder = ReportFolder(out, on_file)
    folder.check([f"{item.key}.{fmt}" for item in items for fmt in ("png", "pdf")] + ["index.md", "index.html"])
    _refuse_dropping_items(folder, items)
    folder.note(items=[item.key for item in items])
    found = {item.key: {cell: cell.find(models) for cell in item.cells} for item in items}
    stage = {**dict.fromkeys(DERIVED, 1), IDEAL: 2, AT_MEMORIZER_SIGMA: 3}  # what each kind needs comes first
    work = sorted({(cell.analysis or item.analysis, model) for item in items for cell, models_ in found[item.key].items()
                   for model in models_}, key=lambda pair: (stage.get(pair[0], 0), pair[0], pair[1].name))
    stores: dict[tuple[str, str], xr.Dataset] = {}
    for kind, model in track(work, "paper stores", len(work), progress):
        if kind == AT_MEMORIZER_SIGMA:
            sigma = _memorizer_sigma(stores, settings)
            if sigma is not None:  # none of the grid passes: nothing to measure (the page says so)
                stores[kind, model.name] = _cached("training-span", model, replace(settings, sigma=sigma), folder,
                                                   recompute, device)
        else:
            stores[kind, model.name] = _cached(kind, model, settings, folder, recompute, device, stores)
    blocks: list[Block] = [
        Heading("An et al. (2410.21273) and Kadkhodaie et al. (ICLR 2024), regenerated", 1),
        Text(f"Rendered by `biasprobe report paper` (biasprobe {__version__}) from the zoo `{zoo}` "
             f"({len(models)} models); every figure is drawn from the stores in `stores/`, cached by checkpoint "
             f"sha256 and parameters ({json.dumps(asdict(settings))}). FID is not measured (no Inception weights "
             "offline); the generalization gap and the memorized share stand in for it."),
    ]
    blocks += _training_blocks(zoo_training(zoo))
    blocks += _claims_blocks(models, stores)
    for item in items:
        have, drawn = {}, set()
        for cell, ms in found[item.key].items():  # a model two cells name (N=10 is the largest) is drawn once
            kind = cell.analysis or item.analysis
            runs = [stores[kind, m.name] for m in ms if (kind, m.name) in stores]
            if runs and (kind, *(m.name for m in ms)) not in drawn:
                drawn.add((kind, *(m.name for m in ms)))
                have[cell] = runs
        missing = [cell for cell, ms in found[item.key].items() if len(ms) < cell.seeds]
        blocks += [Heading(item.title), Text(f"Paper: {item.paper}")]
        figure = item.draw(have) if have else None
        if figure is not None:
            names = folder.write_figure(figure, item.key)
            blocks.append(Picture(names["png"], names["pdf"], item.title))
        if have and item.table is not None:
            header, rows = item.table(have)
            blocks.append(Table(header, rows))
        if missing:
            status = "Not drawn" if figure is None else "Partial"
            blocks.append(Text(f"**{status}: the zoo lacks** " + "; ".join(
                cell.describe() + (f" (has {len(found[item.key][cell])})" if found[item.key][cell] else "")
                for cell in missing) + "."))
    index = folder.write_text("index.md", markdown(blocks))
    html = folder.write_text("index.html", html_page(blocks, "biasprobe report paper"))
    if {item.key for item in items} >= {item.key for item in PAPER}:  # every store a full page needs was used
        folder.prune_stores()
    folder.finish()
    return Report(index, html, [folder.path / name for name in folder.files])


def _memorizer_sigma(stores: dict[tuple[str, str], xr.Dataset], settings: Settings) -> float | None:
    """The memorizer σ (:func:`biasprobe.reports.claims.memorizer_sigma`) from this run's ideal-memorizer stores."""
    return memorizer_sigma([store for (kind, _), store in stores.items() if kind == IDEAL], settings.memorizer_sigmas)


def _refuse_dropping_items(folder: ReportFolder, items: Sequence[Item]) -> None:
    """Refuse to render a subset of the items into a folder holding others (the page and files of those
    would be replaced by the subset's), before anything is written."""
    earlier = set(folder.previous.get("items", []))
    earlier |= {item.key for item in PAPER if f"{item.key}.png" in folder.previous.get("files", [])}
    dropped = [item.key for item in PAPER if item.key in earlier - {item.key for item in items}]
    if dropped:
        keys = ",".join(item.key for item in items)
        raise InputError(f"{folder.path} holds a paper report with {', '.join(dropped)} too, which rendering only "
                         f"{keys} there would remove; choose another " + "{out} folder for " + keys + ", or render "
                         "every item there (leave out {only})", parameters=["out", "only"])


def _percent(value: float | None, se: float | None = None) -> str:
    if value is None:
        return "—"
    return f"{100 * value:+.1f} %" + ("" if se is None else f" ± {100 * se:.1f} %")


def _training_blocks(states: list[TrainedSoFar]) -> list[Block]:
    """The table of how far every zoo model is trained, and which are not on a plateau."""
    from biasprobe.training.plateau import LAST, TOLERANCE, Z

    rows = [[s.name, f"{s.steps_done if s.steps_done is not None else '—'} / {s.steps if s.steps is not None else '—'}",
             _percent(s.change, s.change_se), {True: "yes", False: "**no**", None: "not judged"}[s.plateau]]
            for s in states]
    flat = [s.name for s in states if s.plateau]
    not_flat = [s.name for s in states if s.plateau is False]
    unjudged = [s.name for s in states if s.plateau is None]
    short = [s.name for s in states if s.steps_done is not None and s.steps is not None and s.steps_done < s.steps]
    if not_flat and not flat and not unjudged:
        verdict = f"**None of the zoo's {len(states)} models is on a plateau.**"
    elif not_flat:
        verdict = f"**Not on a plateau: {len(not_flat)} of the zoo's {len(states)} models** ({', '.join(not_flat)})."
    elif flat:
        verdict = f"All {len(flat)} judged models of the zoo are on a plateau."
    else:
        verdict = "No model of the zoo has a loss curve long enough to judge whether it is on a plateau."
    if unjudged and (flat or not_flat):
        verdict += f" Not judged (no loss curve, or one too short): {', '.join(unjudged)}."
    if short:
        verdict += f" {len(short)} of the {len(states)} models have not done their recipe's steps yet."
    if not_flat:
        verdict += (" Their losses still fall (or their curves are too noisy to call flat), so every number below is "
                    "that of models trained this far, not of converged ones.")
    last, tolerance = f"{100 * LAST:g} %", f"{100 * TOLERANCE:g} %"
    rule = (f"Loss change: the mean training loss over the last {last} of the steps done against the {last} "
            f"before, ± its standard error from the curve's scatter; a model is on a plateau when |change| + {Z:g} "
            f"s.e. ≤ {tolerance} (`biasprobe.training.plateau`, docs/zoo.md).")
    return [Heading("How far the zoo is trained"), Text(verdict),
            Table(["model", "steps done / recipe steps", f"loss change over the last {last}", "plateau"], rows),
            Text(rule)]


def _claims_blocks(models: list[ZooModel], stores: dict[tuple[str, str], xr.Dataset]) -> list[Block]:
    """The claims table (:mod:`biasprobe.reports.claims`) and the rule behind each outcome."""
    claims = check_claims(models, stores)
    rows = [[c.source, c.statement, c.paper, c.ours, f"**{c.outcome}**"] for c in claims]
    rules = "\n".join(f"{number}. {c.statement}: held if {c.rule}." for number, c in enumerate(claims, start=1))
    return [Heading("Claims"),
            Text("Each claim of the papers, the paper's number, ours (mean ± s.d. over seeds where the zoo has "
                 "several; with the training steps of the models compared, since models trained for different numbers "
                 "of steps are not like for like) and whether it held by the rule listed below the table. The rules "
                 "were fixed before the zoo's numbers were read; a claim without the models or stores it needs is not "
                 "tested."),
            Table(["source", "claim", "paper", "ours", "outcome"], rows),
            Text("Rules:\n\n" + rules)]


def _cached(kind: str, model: ZooModel, settings: Settings, folder: ReportFolder, recompute: bool,
            device: str | None, done: dict[tuple[str, str], xr.Dataset] | None = None) -> xr.Dataset:
    """The store of ``kind`` for ``model`` under ``folder/stores``: reused when its key matches, else computed.
    A derived kind (:data:`DERIVED`) takes its source store from ``done`` (this run's stores) or the cache;
    its cached source counts as used even when the derived store is reused (a full run keeps it)."""
    done = {} if done is None else done
    key = settings.key(kind, model)
    path = _cache_entry(folder, f"stores/{kind}-{model.name}-{key}.zarr{SINGLE_FILE_SUFFIX}")
    if kind in DERIVED:
        source_name = f"stores/{DERIVED[kind]}-{model.name}-{settings.key(DERIVED[kind], model)}.zarr"
        if store_exists(folder.path / (source_name + SINGLE_FILE_SUFFIX)) or store_exists(folder.path / source_name):
            _cache_entry(folder, source_name + SINGLE_FILE_SUFFIX)
    if not recompute and store_exists(path):
        try:
            dataset = open_store(path)
        except InputError:  # an interrupted writer: compute again
            dataset = None
        if dataset is not None and dataset.attrs.get("recipe_key") == key:
            return dataset
    source = None
    if kind in DERIVED:
        source = done.get((DERIVED[kind], model.name))
        if source is None:  # not added to this run's stores: what the claims see must not depend on the cache
            source = _cached(DERIVED[kind], model, settings, folder, recompute, device, done)
    dataset = compute(kind, model, settings, device, source)
    save(dataset, path)
    return dataset


def _cache_entry(folder: ReportFolder, name: str) -> Path:
    """Where the cached store ``name`` (a single file, ``stores/NAME.zarr.zip``) lives. A cache entry of the
    folder form (``stores/NAME.zarr``, written before stores were single files) is packed into it on first
    use; the folder is then unused, and a run of every item removes it."""
    path = folder.store_path(name)
    older = path.with_name(path.name.removesuffix(SINGLE_FILE_SUFFIX))
    if not store_exists(path) and store_exists(older):
        with contextlib.suppress(InputError):  # an interrupted older store: computed again
            pack(older, path)
    return path
