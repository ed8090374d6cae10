"""The GAHB survey's figure (science v3), drawn from a ``gahb-survey`` Dataset alone.

:func:`survey_figure`: per σ, the share of (image, draw) cells in each GAHB category at the test images (and
the training images, when analysed); the spectra of ∂D/∂y (median over images and draws, 10-90 % band) per
σ; the first image's top eigenvectors at the σ nearest 0.2. Like every figure function, it computes nothing
from a model and draws without pyplot.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from biasprobe.analyses.harmonic import CATEGORIES
from biasprobe.figures.base import label


def survey_figure(survey: xr.Dataset, ranks: int = 6) -> Figure:
    """Category shares per σ and split, spectra per σ, and the first image's top ``ranks`` eigenvectors."""
    splits = [s for s in ("test", "train") if (survey.split.values == s).any()]
    figure = Figure(figsize=(4.2 * (len(splits) + 1), 6.4), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=(3, 1.4))
    axes = top.subplots(1, len(splits) + 1, squeeze=False)[0]
    sigmas = survey.sigma.values
    colours = dict(zip(CATEGORIES, ("0.6", "tab:blue", "tab:purple", "tab:green", "tab:red", "tab:orange", "0.3")))
    for axis, split in zip(axes, splits):
        chosen = survey.category.isel(image=np.flatnonzero(survey.split.values == split))
        bottoms = np.zeros(len(sigmas))
        for name in CATEGORIES:
            share = (chosen == name).mean(("image", "draw")).transpose("sigma").values
            if share.any():
                axis.bar(np.arange(len(sigmas)), share, bottom=bottoms, color=colours.get(name, "0.5"), label=name)
                bottoms += share
        axis.set_xticks(np.arange(len(sigmas)), [f"{s:g}" for s in sigmas])
        axis.set_xlabel(label(survey.sigma))
        axis.set_ylabel("share of images × draws")
        axis.set_title(f"GAHB category at {split} images ({chosen.sizes['image']} × {chosen.sizes['draw']} draws)",
                       fontsize=9)
    axes[0].legend(fontsize=7, loc="lower left")
    spectra = axes[-1]
    for j, sigma in enumerate(sigmas):
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
    at = int(np.argmin(np.abs(sigmas - 0.2)))
    shown = min(ranks, survey.sizes["rank"])
    vectors = bottom.subplots(1, shown, squeeze=False)[0]
    for k, axis in enumerate(vectors):
        vector = survey.eigenvector.isel(sigma=at, rank=k).values
        scale = np.abs(vector).max() or 1
        axis.imshow(vector[0] if vector.shape[0] == 1 else vector.mean(0), cmap="RdBu_r", vmin=-scale, vmax=scale)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_xlabel(f"k = {k}, λ = {float(survey.spectrum.isel(image=0, draw=0, sigma=at, index=k)):.2f}", fontsize=7)
    bottom.suptitle(f"top eigenvectors at the first image, σ = {sigmas[at]:g} (colour: ± largest entry)", fontsize=9)
    return figure


__all__ = ["survey_figure"]
