"""Figures of the Jacobian analysis, drawn from a jacobian Dataset (or its store) alone.

- :func:`eigenvector_figure`: Kadkhodaie et al. Fig. 5 / An et al. Figs. 1 and 3 — the noisy and
  denoised image, then eigenvectors at chosen ranks (default 0, d/8, d/4) with their λ, colour
  eigenvectors split into one row per channel.
- :func:`spectrum_figure`: λ_k against k, one curve per σ, or per labelled Dataset (checkpoint).
- :func:`harmonic_figure`: frequency centroid and participation ratio against k, with the verdict.
- :func:`jacobian_figure`: the three together (what ``biasprobe jacobian --figure`` draws).

Every function takes an optional ``figure`` (Figure or SubFigure) to draw into and returns it;
no pyplot, so they render with Agg and leave no global state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr
from matplotlib.figure import Figure, SubFigure

from biasprobe.analyses.harmonic import gahb_summary
from biasprobe.errors import InputError
from biasprobe.figures.base import Source, as_dataset, as_datasets, new_canvas


def default_ranks(dataset: xr.Dataset) -> list[int]:
    """Ranks 0, d/8 and d/4 (as in the papers), those with a stored eigenvector."""
    d = int(np.prod([dataset.sizes[dim] for dim in ("channel", "y", "x")]))
    return sorted({k for k in (0, d // 8, d // 4) if k < dataset.sizes["rank"]})


def eigenvector_figure(
    source: Source,
    *,
    image: int = 0,
    sigma: int = 0,
    ranks: Sequence[int] | None = None,
    figure: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """Noisy and denoised image, then the eigenvectors e_k at ``ranks`` (by position) titled with λ_k.

    Each eigenvector is drawn on a symmetric colour scale ±max|e_k|; colour images get one row
    per channel."""
    at = as_dataset(source).isel(image=image, sigma=sigma)
    ranks = list(ranks) if ranks is not None else default_ranks(at)
    missing = [k for k in ranks if k >= at.sizes["rank"]]
    if missing:
        raise InputError(f"eigenvectors {missing} are not stored (only the first {at.sizes['rank']}); rerun with a larger "
                         "{top_k}", parameters=["top_k"])
    channels = at.sizes["channel"]
    canvas = new_canvas(figure, 1.6 * (2 + len(ranks)), 1.7 * channels + 0.4)
    axes = canvas.subplots(channels, 2 + len(ranks), squeeze=False)
    for c in range(channels):
        for column, (name, picture) in enumerate((("noisy", at.noisy), ("denoised", at.denoised))):
            axis = axes[c, column]
            if channels == 3 and c == 0:
                axis.imshow(np.clip(picture.transpose("y", "x", "channel").values, 0, 1))
            elif channels == 1:
                axis.imshow(picture.isel(channel=0).values, cmap="gray", vmin=0, vmax=1)
            else:
                axis.set_visible(False)
            axis.set_title(name if c == 0 else "", fontsize=8)
        for column, k in enumerate(ranks, start=2):
            vector = at.eigenvector.isel(rank=k)
            limit = float(np.abs(vector).max())
            axis = axes[c, column]
            axis.imshow(vector.isel(channel=c).values, cmap="RdBu_r", vmin=-limit, vmax=limit)
            if c == 0:
                axis.set_title(f"λ{k} = {float(at.eigenvalue[k]):.3g}", fontsize=8)
            if column == 2 and channels > 1:
                axis.set_ylabel("RGB"[c] if channels == 3 else f"channel {c}", fontsize=8)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    canvas.suptitle(f"Jacobian eigenvectors ({at.attrs.get('output', 'denoised')}), σ = {float(at.sigma):g}", fontsize=9)
    return canvas


def spectrum_figure(
    source: Source | Mapping[str, Source],
    *,
    image: int = 0,
    figure: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """λ_k against k: one curve per σ for one Dataset, or one per entry of a {label: Dataset} mapping
    or per checkpoint of a sweep (at its first σ)."""
    canvas = new_canvas(figure, 4.0, 3.0)
    axis = canvas.subplots()
    runs = as_datasets(source)
    if len(runs) > 1 or (isinstance(source, Mapping) and not isinstance(source, xr.Dataset)):
        curves = {label: run.isel(image=image, sigma=0).spectrum for label, run in runs.items()}
    else:
        at = next(iter(runs.values())).isel(image=image)
        curves = {f"σ = {float(s):g}": at.spectrum.sel(sigma=s) for s in at.sigma.values}
    for label, spectrum in curves.items():
        axis.plot(spectrum["index"].values, spectrum.values, label=label)
    axis.axhline(0, color="0.7", linewidth=0.5)
    axis.set_xlabel("k")
    axis.set_ylabel("eigenvalue λ_k of (J + Jᵀ)/2")
    axis.legend(fontsize=7)
    return canvas


def harmonic_figure(
    source: Source, *, top: int | None = None, figure: Figure | SubFigure | None = None
) -> Figure | SubFigure:
    """Frequency centroid and participation ratio of e_k against k (mean over images, one line per σ),
    titled with harmonicity, adaptivity and the verdict per σ."""
    summary = gahb_summary(as_dataset(source), top)
    canvas = new_canvas(figure, 7.0, 3.0)
    frequency_axis, participation_axis = canvas.subplots(1, 2)
    lines = []
    for s in range(summary.sizes["sigma"]):
        at = summary.isel(sigma=s)
        label = f"σ = {float(at.sigma):g}"
        frequency_axis.plot(at["rank"].values, at.frequency_centroid.mean("image").values, label=label)
        participation_axis.plot(at["rank"].values, at.participation_ratio.mean("image").values, label=label)
        lines.append(
            f"{label}: harmonicity {float(at.mean_harmonicity):.2f}, adaptivity {float(at.adaptivity):.2f}"
            f" — {at.verdict.item()}"
        )
    frequency_axis.set(xlabel="k", ylabel="frequency centroid (cycles/pixel)")
    participation_axis.set(xlabel="k", ylabel="participation ratio", yscale="log")
    frequency_axis.legend(fontsize=7)
    canvas.suptitle("\n".join(lines), fontsize=8)
    return canvas


def jacobian_figure(source: Source, *, image: int = 0, sigma: int = 0) -> Figure:
    """Eigenvectors (top), spectrum and GAHB metrics (bottom) in one figure."""
    dataset = as_dataset(source)
    ranks = default_ranks(dataset)
    canvas = Figure(figsize=(max(8.0, 1.6 * (2 + len(ranks))), 4.2 + 1.7 * dataset.sizes["channel"]), layout="constrained")
    top, bottom = canvas.subfigures(2, 1, height_ratios=[1.7 * dataset.sizes["channel"] + 0.4, 3.2])
    eigenvector_figure(dataset, image=image, sigma=sigma, ranks=ranks, figure=top)
    left, right = bottom.subfigures(1, 2, width_ratios=[1, 2])
    spectrum_figure(dataset, image=image, figure=left)
    if dataset.sizes["rank"] >= 2:
        harmonic_figure(dataset, figure=right)
    return canvas


__all__ = ["default_ranks", "eigenvector_figure", "harmonic_figure", "jacobian_figure", "spectrum_figure"]
