"""Figures of memorization, drawn from memorization and training-span Datasets alone.

- :func:`twins_figure`: Kadkhodaie et al.'s two-model figure — samples of the models trained on the
  disjoint halves S1 and S2 from the same seeds, with their paired similarity, one row pair per N.
- :func:`memorizers_figure`: the memorized share of each model's samples (bars, against the share a
  memorizer needs), beside one span-fraction panel per family (:func:`~biasprobe.figures.jacobian.
  span_fraction_figure`).

Like every figure function, they compute nothing from a model and draw without pyplot.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from biasprobe.figures.jacobian import span_fraction_figure


def twins_figure(pairs: Mapping[int, tuple[xr.Dataset, xr.Dataset]], count: int = 6) -> Figure:
    """For each N of ``pairs`` (N -> the memorization Datasets of the S1 and the S2 model), the first
    ``count`` samples of both (at most as many as the smallest store holds) in two rows, each column's
    paired cosine similarity below it (:func:`~biasprobe.analyses.memorization.paired_similarity`)."""
    import torch

    from biasprobe.analyses.memorization import paired_similarity

    count = min(count, min(ds.sizes["sample"] for pair in pairs.values() for ds in pair))
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


def memorizers_figure(shares: Mapping[str, float | None], needed: float,
                      panels: Mapping[str, tuple[Mapping[str, xr.Dataset], Mapping[str, xr.Dataset]]],
                      ranks: int = 20) -> Figure:
    """The memorized share of each labelled model's samples (``shares``; None: no memorization store), red
    where it reaches ``needed`` (dashed line); then one panel per title of ``panels`` (title -> (memorizers,
    contrasts), labelled training-span Datasets) with :func:`span_fraction_figure` over the top ``ranks``."""
    columns = min(3, 1 + len(panels))
    rows = -(-(1 + len(panels)) // columns)
    figure = Figure(figsize=(3.6 * columns, 4.9 * rows), layout="constrained")
    canvases = figure.subfigures(rows, columns, squeeze=False).ravel()
    bars = canvases[0].subplots()
    for position, share in enumerate(shares.values()):
        if share is not None:
            bars.bar(position, share, color="C3" if share >= needed else "0.6")
            bars.text(position, share + 0.02, f"{share:.2f}", ha="center", va="bottom", fontsize=7)
        else:
            bars.text(position, 0.02, "no store", rotation=90, ha="center", va="bottom", fontsize=7)
    bars.axhline(needed, color="k", linestyle="--", linewidth=0.8)
    bars.set_xticks(range(len(shares)), [name.replace(" N=", "\nN=") for name in shares], fontsize=7, rotation=30)
    bars.set_ylim(0, 1.08)
    bars.set_ylabel("memorized share of samples")
    bars.set_title("samples that copy a training image", fontsize=9)
    for canvas, (title, (memorizers, contrasts)) in zip(canvases[1:], panels.items()):
        span_fraction_figure(memorizers, contrasts, ranks=ranks, figure=canvas)
        canvas.suptitle(title, fontsize=9)
    return figure
