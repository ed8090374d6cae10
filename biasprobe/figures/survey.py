"""The GAHB survey's figures (science v3), drawn from ``gahb-survey`` Datasets alone.

- :func:`survey_figure`: one survey: per σ, the share of (image, draw) cells in each GAHB category at the test
  images (and the training images, when analysed); the spectra of ∂D/∂y (median over images and draws, 10-90 %
  band) per σ; the first image's top eigenvectors at the σ nearest 0.2.
- :func:`survey_rows_figure`: several labelled surveys (the paper's Figs. 1 and 3 under science v3), one row
  each: the category shares at the test images per σ, then the first image's top eigenvectors.
- :func:`span_scores_figure`: the memorizers' span scores at training and test images against their largest-N
  contrasts, with standard errors, and the rule's threshold.

Like every figure function, they compute nothing from a model and draw without pyplot.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from biasprobe.analyses.harmonic import CATEGORIES
from biasprobe.figures.base import label


COLOURS = dict(zip(CATEGORIES, ("0.6", "tab:blue", "tab:purple", "tab:green", "tab:red", "tab:orange", "0.3")))
"""One colour per GAHB category, in every survey figure."""


def _category_bars(axis, survey: xr.Dataset, split: str, legend: bool) -> None:
    """Stacked shares of each category over images × draws at each σ, for the images of ``split``."""
    sigmas = survey.sigma.values
    chosen = survey.category.isel(image=np.flatnonzero(survey.split.values == split))
    bottoms = np.zeros(len(sigmas))
    for name in CATEGORIES:
        share = (chosen == name).mean(("image", "draw")).transpose("sigma").values
        if share.any():
            axis.bar(np.arange(len(sigmas)), share, bottom=bottoms, color=COLOURS[name], label=name)
            bottoms += share
    axis.set_xticks(np.arange(len(sigmas)), [f"{s:g}" for s in sigmas])
    axis.set_xlabel(label(survey.sigma))
    axis.set_ylabel("share of images × draws")
    axis.set_title(f"GAHB category at {split} images ({chosen.sizes['image']} × {chosen.sizes['draw']} draws)",
                   fontsize=9)
    if legend:
        axis.legend(fontsize=7, loc="lower left")


def _eigenvectors(axes, survey: xr.Dataset, sigma: float = 0.2) -> float:
    """The first image's top eigenvectors at the stored σ nearest ``sigma`` (one per axis); returns that σ."""
    at = int(np.argmin(np.abs(survey.sigma.values - sigma)))
    for k, axis in enumerate(axes):
        vector = survey.eigenvector.isel(sigma=at, rank=k).values
        scale = np.abs(vector).max() or 1
        axis.imshow(vector[0] if vector.shape[0] == 1 else vector.mean(0), cmap="RdBu_r", vmin=-scale, vmax=scale)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_xlabel(f"k = {k}, λ = {float(survey.spectrum.isel(image=0, draw=0, sigma=at, index=k)):.2f}",
                        fontsize=7)
    return float(survey.sigma.values[at])


def survey_rows_figure(surveys: Mapping[str, xr.Dataset], ranks: int = 6) -> Figure:
    """One row per labelled survey: its category shares at the test images per σ, then the first image's top
    ``ranks`` eigenvectors at the σ nearest 0.2 (colour: ± the vector's largest entry)."""
    figure = Figure(figsize=(3.2 + 1.3 * ranks, 2.6 * len(surveys)), layout="constrained")
    rows = figure.subfigures(len(surveys), 1, squeeze=False)[:, 0]
    for row, (name, survey) in zip(rows, surveys.items()):
        shown = min(ranks, survey.sizes["rank"])
        axes = row.subplots(1, shown + 1, width_ratios=(2.4, *([1] * shown)))
        _category_bars(axes[0], survey, "test", legend=True)
        sigma = _eigenvectors(axes[1:], survey)
        row.suptitle(f"{name}: top eigenvectors of ∂D/∂y at the first test image, σ = {sigma:g}", fontsize=9)
    return figure


def span_scores_figure(scores: Mapping[str, Mapping[str, tuple[float, float]]], threshold: float) -> Figure:
    """Grouped bars: for each labelled model, its span score (value, standard error) at each kind of image
    (``training images``, ``test images``); the dashed line is the rule's ``threshold``."""
    figure = Figure(figsize=(1.2 + 1.1 * len(scores), 3.6), layout="constrained")
    axis = figure.subplots()
    kinds = list(dict.fromkeys(kind for values in scores.values() for kind in values))
    width = 0.8 / max(1, len(kinds))
    for j, kind in enumerate(kinds):
        values = [scores[name].get(kind, (np.nan, np.nan)) for name in scores]
        axis.bar(np.arange(len(scores)) + (j - (len(kinds) - 1) / 2) * width, [v for v, _ in values], width,
                 yerr=[e if np.isfinite(e) else 0 for _, e in values], capsize=3, label=kind)
    axis.axhline(threshold, color="0.3", ls="--", lw=0.8, label=f"rule: {threshold:g}")
    axis.set_xticks(np.arange(len(scores)), list(scores), rotation=30, ha="right", fontsize=8)
    axis.set_ylim(0, 1)
    axis.set_ylabel("span score Σ λ‖Pe‖² / Σ λ (± s.e. over images)")
    axis.legend(fontsize=7)
    return figure


def survey_figure(survey: xr.Dataset, ranks: int = 6) -> Figure:
    """Category shares per σ and split, spectra per σ, and the first image's top ``ranks`` eigenvectors."""
    splits = [s for s in ("test", "train") if (survey.split.values == s).any()]
    figure = Figure(figsize=(4.2 * (len(splits) + 1), 6.4), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=(3, 1.4))
    axes = top.subplots(1, len(splits) + 1, squeeze=False)[0]
    for number, (axis, split) in enumerate(zip(axes, splits)):
        _category_bars(axis, survey, split, legend=number == 0)
    spectra = axes[-1]
    for j, sigma in enumerate(survey.sigma.values):
        values = survey.spectrum.isel(sigma=j).stack(cell=("image", "draw")).transpose("index", "cell").values
        low, mid, high = np.percentile(values, (10, 50, 90), axis=1)
        line, = spectra.plot(survey.index.values, mid, label=f"σ = {sigma:g}")
        spectra.fill_between(survey.index.values, low, high, color=line.get_color(), alpha=0.2)
    spectra.axhline(1, color="0.4", lw=0.7, ls=":")
    spectra.set_xscale("log")
    spectra.set_xlabel("index k (eigenvalues in decreasing order)")
    spectra.set_ylabel(label(survey.spectrum))
    spectra.set_title("spectra of ∂D/∂y: median, 10-90 % band", fontsize=9)
    spectra.legend(fontsize=7)
    vectors = bottom.subplots(1, min(ranks, survey.sizes["rank"]), squeeze=False)[0]
    sigma = _eigenvectors(vectors, survey)
    bottom.suptitle(f"top eigenvectors at the first image, σ = {sigma:g} (colour: ± largest entry)", fontsize=9)
    return figure


__all__ = ["COLOURS", "span_scores_figure", "survey_figure", "survey_rows_figure"]
