"""Figures of the Jacobian analysis, drawn from a jacobian Dataset (or its store) alone.

- :func:`eigenvector_figure`: Kadkhodaie et al. Fig. 5 / An et al. Figs. 1 and 3 — the noisy and
  denoised image, then eigenvectors at chosen ranks (default 0, d/8, d/4) with their λ, colour
  eigenvectors split into one row per channel.
- :func:`spectrum_figure`: λ_k against k, one curve per σ, or per labelled Dataset (checkpoint).
- :func:`harmonic_figure`: frequency centroid and participation ratio against k, with the verdict.
- :func:`jacobian_figure`: the three together (what ``biasprobe jacobian --figure`` draws).
- :func:`span_fraction_figure`: from training-span Datasets
  (:func:`~biasprobe.analyses.span.jacobian_memorization`): ‖P_T e_j‖² against the rank j
  of the denoiser's Jacobian, with the held-out control ‖P_H e_j‖² and chance dim/d.
- :func:`spectra_and_eigenvectors_figure`: An et al. Figs. 1 and 3 as ``report paper`` draws them — the
  spectra of several labelled stores in one panel, then each store's eigenvectors in a row.
- :func:`side_by_side_figure`: An et al. Figs. 1 and 3 — one row per store (checkpoint) at the
  same image and σ: clean, noisy, D(y), eigenvectors at chosen ranks with λ, and the GAHB and
  memorization metrics (what ``biasprobe jacobian A.pt B.pt … --figure`` draws).

A raw-output store (``output="raw"``) holds the Jacobian of the network's own output (ε̂ or
residual): its spectrum is (1 − λ)/σ_n of the denoiser's (1 − λ for residual networks), so its
top eigenvectors are the denoiser's bottom ones; the titles say so.

Every function takes an optional ``figure`` (Figure or SubFigure) to draw into and returns the root
Figure; ``sigma`` is a noise level (the nearest stored one; default the first); axes are labelled
from the variables' ``long_name``/``units``. No pyplot, so they render with Agg and leave no global
state.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure, SubFigure

from biasprobe.analyses.harmonic import gahb_summary, verdict_line
from biasprobe.errors import InputError
from biasprobe.figures.base import (
    Source,
    as_dataset,
    as_datasets,
    at_sigma,
    checkpoint_label,
    label,
    new_canvas,
    root,
)


def default_ranks(dataset: xr.Dataset) -> list[int]:
    """Ranks 0, d/8 and d/4 (as in the papers), those with a stored eigenvector."""
    d = int(np.prod([dataset.sizes[dim] for dim in ("channel", "y", "x")]))
    return sorted({k for k in (0, d // 8, d // 4) if k < dataset.sizes["rank"]})


def _at(dataset: xr.Dataset, sigma: float | None, function: str) -> xr.Dataset:
    """:func:`~biasprobe.figures.base.at_sigma`, reading an int as the old σ index (deprecated)."""
    if isinstance(sigma, int | np.integer) and not isinstance(sigma, bool):
        value = float(dataset.sigma.values[sigma])
        warnings.warn(
            f"{function}(sigma={sigma}) reads an int as the old index of the noise level, for one release: sigma "
            f"now takes the level itself (here sigma={value:g}; the nearest stored level)",
            DeprecationWarning, stacklevel=3,
        )
        sigma = value
    return at_sigma(dataset, sigma)


def eigenvector_figure(
    source: Source,
    *,
    image: int = 0,
    sigma: float | None = None,
    ranks: Sequence[int] | None = None,
    figure: Figure | SubFigure | None = None,
) -> Figure:
    """Clean, noisy and denoised image, then the eigenvectors e_k at ``ranks`` (by position) titled
    with λ_k, at the noise level ``sigma`` (the nearest stored; default the first).

    Each eigenvector is drawn divided by its largest |entry|, on one symmetric colour scale [−1, 1]
    with its colour bar; colour images get one row per channel."""
    at = _at(as_dataset(source, "jacobian"), sigma, "eigenvector_figure").isel(image=image)
    ranks = list(ranks) if ranks is not None else default_ranks(at)
    missing = [k for k in ranks if k >= at.sizes["rank"]]
    if missing:
        raise InputError(f"eigenvectors {missing} are not stored (only the first {at.sizes['rank']}); rerun with a larger "
                         "{top_k}", parameters=["top_k"])
    channels = at.sizes["channel"]
    pictures = [(name, at[variable]) for name, variable in (("clean x", "clean"), ("noisy y", "noisy"),
                                                             ("denoised D(y)", "denoised")) if variable in at]
    canvas = new_canvas(figure, 1.6 * (len(pictures) + len(ranks)) + 0.9, 1.7 * channels + 0.4)
    axes = canvas.subplots(channels, len(pictures) + len(ranks), squeeze=False)
    for c in range(channels):
        for column, (name, picture) in enumerate(pictures):
            axis = axes[c, column]
            if channels == 3 and c == 0:
                axis.imshow(np.clip(picture.transpose("y", "x", "channel").values, 0, 1))
            elif channels == 1:
                axis.imshow(picture.isel(channel=0).values, cmap="gray", vmin=0, vmax=1)
            else:
                axis.set_visible(False)
            axis.set_title(name if c == 0 else "", fontsize=8)
        for column, k in enumerate(ranks, start=len(pictures)):
            vector = at.eigenvector.isel(rank=k)
            scale = float(np.abs(vector).max()) or 1.0
            axis = axes[c, column]
            drawn = axis.imshow(vector.isel(channel=c).values / scale, cmap="RdBu_r", vmin=-1, vmax=1)
            if c == 0:
                axis.set_title(f"λ{k} = {float(at.eigenvalue[k]):.3g}", fontsize=8)
            if column == len(pictures) and channels > 1:
                axis.set_ylabel("RGB"[c] if channels == 3 else f"channel {c}", fontsize=8)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    if ranks:
        bar = canvas.colorbar(drawn, ax=axes[:, len(pictures):].ravel().tolist(), shrink=0.8, ticks=[-1, 0, 1])
        bar.set_label("e_k / max|e_k|", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    canvas.suptitle(f"{output_title(at)}, σ = {float(at.sigma):g}", fontsize=9)
    return root(canvas)


def training_span_figure(source: Source) -> Figure:
    """:func:`span_fraction_figure` of one training-span store, labelled by its checkpoint."""
    dataset = as_dataset(source, "training-span")
    return span_fraction_figure({checkpoint_label(dataset.attrs.get("checkpoint"), "model"): dataset})


def ideal_memorizer_figure(source: Source) -> Figure:
    """:func:`span_fraction_figure` of an ideal-memorizer store, one curve per σ."""
    dataset = as_dataset(source, "ideal-memorizer")
    return span_fraction_figure({f"ideal memorizer, σ = {float(sigma):g}": dataset.sel(sigma=[sigma])
                                 for sigma in dataset.sigma.values})


def output_title(dataset: xr.Dataset) -> str:
    """What the eigenvectors are of: the denoiser's J, or the raw output's, whose order is reversed."""
    if dataset.attrs.get("output", "denoised") != "raw":
        return "eigenvectors of J = ∂D(y)/∂y"
    return ("eigenvectors of the raw output's Jacobian ∂ε̂/∂y: spectrum (1 − λ)/σ_n of D's, "
            "its top vectors are D's bottom ones")


def spectrum_figure(
    source: Source | Mapping[str, Source],
    *,
    image: int = 0,
    sigma: float | None = None,
    figure: Figure | SubFigure | None = None,
) -> Figure:
    """λ_k against k: one curve per σ for one Dataset, or one per entry of a {label: Dataset} mapping
    or per checkpoint of a sweep, at the noise level ``sigma`` (the nearest stored; default the first)."""
    canvas = new_canvas(figure, 4.0, 3.0)
    axis = canvas.subplots()
    runs = as_datasets(source, "jacobian")
    if len(runs) > 1 or (isinstance(source, Mapping) and not isinstance(source, xr.Dataset)):
        curves = {name: at_sigma(run, sigma).isel(image=image).spectrum for name, run in runs.items()}
    else:
        at = next(iter(runs.values())).isel(image=image)
        levels = at.sigma.values if sigma is None else [float(at_sigma(at, sigma).sigma)]
        curves = {f"σ = {float(s):g}": at.spectrum.sel(sigma=s) for s in levels}
    for name, spectrum in curves.items():
        axis.plot(spectrum["index"].values, spectrum.values, label=name)
    axis.axhline(0, color="0.7", linewidth=0.5)
    axis.set_xlabel(label(spectrum["index"]))
    axis.set_ylabel(label(spectrum))
    axis.legend(fontsize=7)
    return root(canvas)


def span_fraction_figure(
    datasets: Mapping[str, Source],
    contrasts: Mapping[str, Source] | None = None,
    *,
    ranks: int = 20,
    image: int = 0,
    sigma: float | None = None,
    figure: Figure | SubFigure | None = None,
) -> Figure:
    """f_T(j) = ‖P_T e_j‖² against the rank j < ``ranks`` of the denoiser's Jacobian for each labelled
    training-span Dataset (solid), its held-out control f_H(j) (dotted, same colour) and chance
    dim(span T)/d of the first (dash-dot); ``contrasts`` (dashed, grey, no control) are other models
    drawn beside them, such as a large-N model against the memorizers."""
    canvas = new_canvas(figure, 4.0, 3.2)
    axis = canvas.subplots()
    runs = {name: at_sigma(as_dataset(run, ("training-span", "ideal-memorizer")), sigma).isel(image=image) for name, run in datasets.items()}
    others = {name: at_sigma(as_dataset(run, ("training-span", "ideal-memorizer")), sigma).isel(image=image) for name, run in (contrasts or {}).items()}
    for number, (name, at) in enumerate(runs.items()):
        shown = np.arange(min(ranks, at.sizes["denoiser_rank"]))
        axis.plot(shown, at.train_span_fraction.values[shown], "o-", color=f"C{number}", markersize=3,
                  label=f"{name}, training span")
        axis.plot(shown, at.held_out_span_fraction.values[shown], ":", color=f"C{number}", linewidth=1,
                  label=f"{name}, held-out span")
    for number, (name, at) in enumerate(others.items()):
        shown = np.arange(min(ranks, at.sizes["denoiser_rank"]))
        axis.plot(shown, at.train_span_fraction.values[shown], "s--", color=str(0.2 + 0.25 * number), markersize=3,
                  label=f"{name}, training span")
    first = next(iter({**runs, **others}.values()), None)
    if first is not None:
        axis.axhline(float(first.train_span_chance), color="0.4", linestyle="-.", linewidth=0.8,
                     label=f"chance {float(first.train_span_chance):.3f}")
    axis.set_xlabel("rank j of ∂D/∂y (largest λ first)")
    axis.set_ylabel("‖P e_j‖², energy in the span")
    axis.set_ylim(-0.02, 1.02)
    axis.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    return root(canvas)


def spectra_and_eigenvectors_figure(stores: Mapping[str, xr.Dataset]) -> Figure:
    """The spectra of the labelled jacobian Datasets ``stores`` together (:func:`spectrum_figure`), then one
    row per store with its eigenvectors (:func:`eigenvector_figure`), titled by label, output and σ."""
    figure = Figure(figsize=(9, 2.0 * len(stores) + 3.2), layout="constrained")
    rows = figure.subfigures(len(stores) + 1, 1, height_ratios=[3.2] + [2.0] * len(stores))
    spectrum_figure(stores, figure=rows[0])
    for row, (name, dataset) in zip(rows[1:], stores.items()):
        eigenvector_figure(dataset, figure=row)
        row.suptitle(f"{name}: eigenvectors of the {dataset.attrs.get('output', 'denoised')} output, "
                     f"σ = {float(dataset.sigma[0]):g}", fontsize=9)
    return figure


def _shown(value: float, template: str, undefined: str) -> str:
    """``template`` filled with ``value``, or the words ``undefined`` for a NaN (never "nan" in a figure)."""
    return undefined if np.isnan(value) else template.format(value)


def harmonic_figure(
    source: Source, *, top: int | None = None, figure: Figure | SubFigure | None = None
) -> Figure:
    """Roughness on Ω and participation ratio on Ω of e_k against k < K (mean over images, one line
    per σ), titled with harmonicity ρ, confinement κ and the verdict with its counts per σ."""
    summary = gahb_summary(as_dataset(source, "jacobian"), top)
    canvas = new_canvas(figure, 7.0, 3.0)
    roughness_axis, participation_axis = canvas.subplots(1, 2)
    lines = []
    for s in range(summary.sizes["sigma"]):
        at = summary.isel(sigma=s)
        level = f"σ = {float(at.sigma):g}"
        roughness_axis.plot(at["rank"].values, at.roughness.mean("image").values, label=level)
        participation_axis.plot(at["rank"].values, at.participation_ratio.mean("image").values, label=level)
        kappa = _shown(float(at.mean_confinement_excess), "κ {:.2f}", "κ undefined (Ω = frame)")
        lines.append(f"{level}: ρ {float(at.mean_harmonicity):.2f}, {kappa} — {verdict_line(summary, s)}")
    roughness_axis.set(xlabel=label(summary["rank"]), ylabel=label(summary.roughness))
    participation_axis.set(xlabel=label(summary["rank"]), ylabel=label(summary.participation_ratio), yscale="log")
    roughness_axis.legend(fontsize=7)
    width = canvas.get_window_extent().width / canvas.figure.dpi  # inches: the verdict wraps inside its canvas
    columns = max(int(width * 72 / (VERDICT_FONTSIZE * 0.6)), 20)
    canvas.suptitle("\n".join(textwrap.fill(line, columns, subsequent_indent="  ") for line in lines),
                    fontsize=VERDICT_FONTSIZE)
    return root(canvas)


VERDICT_FONTSIZE = 8
"""Points of the verdict lines above the GAHB metrics; they wrap at the width of their canvas."""


def jacobian_figure(source: Source, *, image: int = 0, sigma: float | None = None) -> Figure:
    """Eigenvectors at the noise level ``sigma`` (the nearest stored; default the first) on top,
    spectrum and GAHB metrics of every σ below, in one figure."""
    dataset = as_dataset(source, "jacobian")
    sigma = float(_at(dataset, sigma, "jacobian_figure").sigma)
    ranks = default_ranks(dataset)
    canvas = Figure(figsize=(max(8.0, 1.6 * (2 + len(ranks))), 4.2 + 1.7 * dataset.sizes["channel"]), layout="constrained")
    top, bottom = canvas.subfigures(2, 1, height_ratios=[1.7 * dataset.sizes["channel"] + 0.4, 3.2])
    eigenvector_figure(dataset, image=image, sigma=sigma, ranks=ranks, figure=top)
    left, right = bottom.subfigures(1, 2, width_ratios=[1, 2])
    spectrum_figure(dataset, image=image, figure=left)
    if dataset.sizes["rank"] >= 2:
        try:
            harmonic_figure(dataset, figure=right)
        except InputError as error:  # a raw-output store with top-k vectors only: no verdict to draw
            right.text(0.5, 0.5, str(error), ha="center", va="center", wrap=True, fontsize=7)
    return canvas


SIDE_BY_SIDE_RANKS = (0, 2, 8, 32)


def _metrics_text(dataset: xr.Dataset, image: int, sigma: float | None) -> str:
    """The GAHB and memorization numbers of one row, one per line."""
    try:
        summary = at_sigma(gahb_summary(dataset), sigma).isel(image=image)
    except InputError:
        return "GAHB metrics need the\ndenoiser's top eigenvectors\n(raw top-k store)"
    lines = [str(summary.category.item()), f"tr J {float(summary.effective_dimension):.1f}",
             f"#λ>½ {int(summary.count_above_half)}", f"ρ {float(summary.harmonicity):.2f}  (K {int(summary.top)})",
             f"PR_Ω {float(summary.participation):.3f}",
             _shown(float(summary.confinement_excess), "κ {:.2f}", "κ undefined (Ω = frame)")]
    if "memorization_score" in summary:
        at = at_sigma(dataset, sigma).isel(image=image)
        lines += [_shown(float(summary.memorization_score), "memorization {:.2f}", "memorization undefined"),
                  f"cos D(y)→train {float(at.nearest_train_cosine):.2f}",
                  f"cos D(y)→held-out {float(at.nearest_held_out_cosine):.2f}"]
    return "\n".join(lines)


def side_by_side_figure(
    sources: Mapping[str, Source] | Sequence[Source],
    *,
    image: int = 0,
    sigma: float | None = None,
    ranks: Sequence[int] | None = None,
) -> Figure:
    """One row per store (e.g. per checkpoint), the same image and noise level ``sigma`` (the nearest
    stored; default the first): clean, noisy, D(y), the
    eigenvectors e_k at ``ranks`` (default 0, 2, 8, 32, d/8, d/4, those stored) titled with λ_k,
    and the row's metrics (category, tr J, #λ > ½, ρ, PR_Ω, κ, memorization). Colour
    eigenvectors are drawn as their channel mean."""
    if not isinstance(sources, Mapping):
        sources = {Path(str(as_dataset(item, "jacobian").attrs.get("checkpoint", f"store {n}"))).stem: item
                   for n, item in enumerate(sources)}
    datasets = {label: as_dataset(item, "jacobian") for label, item in sources.items()}
    if not datasets:
        raise InputError("side_by_side_figure needs at least one store")
    first = next(iter(datasets.values()))
    sigma = float(_at(first, sigma, "side_by_side_figure").sigma)
    d = int(np.prod([first.sizes[dim] for dim in ("channel", "y", "x")]))
    stored = min(ds.sizes["rank"] for ds in datasets.values())
    ranks = list(ranks) if ranks is not None else sorted({k for k in (*SIDE_BY_SIDE_RANKS, d // 8, d // 4) if k < stored})
    missing = [k for k in ranks if k >= stored]
    if missing:
        raise InputError(f"eigenvectors {missing} are not stored in every store (only the first {stored})")
    columns = 3 + len(ranks) + 1
    canvas = Figure(figsize=(1.5 * columns + 1.2, 1.75 * len(datasets) + 0.5), layout="constrained")
    axes = canvas.subplots(len(datasets), columns, squeeze=False,
                           gridspec_kw={"width_ratios": [1] * (columns - 1) + [1.8]})
    for row, (row_label, dataset) in enumerate(datasets.items()):
        at = at_sigma(dataset, sigma).isel(image=image)
        for column, name in enumerate(("clean", "noisy", "denoised")):
            picture = at[name].transpose("y", "x", "channel").values
            axis = axes[row, column]
            if picture.shape[-1] == 3:
                axis.imshow(np.clip(picture, 0, 1))
            else:
                axis.imshow(picture.mean(-1), cmap="gray", vmin=0, vmax=1)
            axis.set_title({"clean": "x", "noisy": "y", "denoised": "D(y)"}[name] if row == 0 else "", fontsize=8)
        axes[row, 0].set_ylabel(row_label, fontsize=8)
        for column, k in enumerate(ranks, start=3):
            vector = at.eigenvector.isel(rank=k).mean("channel").values
            limit = float(np.abs(vector).max()) or 1.0
            axes[row, column].imshow(vector, cmap="RdBu_r", vmin=-limit, vmax=limit)
            axes[row, column].set_title(f"λ{k} = {float(at.eigenvalue[k]):.3g}", fontsize=7)
        text = axes[row, -1]
        text.axis("off")
        text.text(0, 0.5, _metrics_text(dataset, image, sigma), fontsize=6.5, va="center", family="monospace")
    for axis in axes[:, :-1].flat:
        axis.set_xticks([])
        axis.set_yticks([])
    canvas.suptitle(f"{output_title(first)}, σ = {sigma:g}, image {image}", fontsize=9)
    return canvas


__all__ = [
    "default_ranks",
    "eigenvector_figure",
    "harmonic_figure",
    "jacobian_figure",
    "output_title",
    "side_by_side_figure",
    "spectrum_figure",
]
