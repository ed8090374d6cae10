"""Figures of the generalization gap (An et al. Figs. 2 and 6, Tables 2 and 3) and of memorization, drawn
from stores alone.

- :func:`gap_figure`: PSNR on training and test images and the gap against noise, one curve per store;
- :func:`seeds_gap_figure`: the same with each model the mean over its seeds (:func:`seed_mean`);
- :func:`average_gap_bars_figure`: the average gap per model, a bar at the mean over seeds and a dot
  per seed;
- :func:`nearest_figure`: samples above their nearest training images.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D

from biasprobe.figures.base import Source, as_dataset, as_datasets, label, log_ticks, new_canvas, root


def _noise_axis(datasets: list[xr.Dataset]) -> tuple[str, bool]:
    """The coordinate all curves share and whether its scale is log: diffusion step t where every
    level of every dataset has one (Fig. 2's axis), else σ."""
    if all(np.all(np.isfinite(dataset.t.values)) for dataset in datasets):
        return "t", False
    return "sigma", True


def gap_figure(sources: Source | Mapping[str, Source], figure: Figure | SubFigure | None = None) -> Figure:
    """Left: mean PSNR on train (solid) and test (dashed) images against noise; right: the gap ± 1 s.e.;
    one legend below both panels, so that it never covers a curve.

    ``sources`` is one gap Dataset/store, a mapping from a label (a checkpoint, an N) to one each, or a
    sweep store (one curve per checkpoint).
    """
    datasets = as_datasets(sources, "gap")
    fig = new_canvas(figure, 10, 4.2)
    psnr_axis, gap_axis = fig.subplots(1, 2)
    colours = sns.color_palette("colorblind", len(datasets))
    coordinate, log = _noise_axis(list(datasets.values()))
    first = next(iter(datasets.values()))
    handles = []
    for colour, (name, dataset) in zip(colours, datasets.items()):
        x = dataset[coordinate].values
        psnr_axis.plot(x, dataset.mean_psnr.sel(split="train"), color=colour)
        psnr_axis.plot(x, dataset.mean_psnr.sel(split="test"), color=colour, linestyle="--")
        handles += gap_axis.plot(x, dataset.gap, color=colour, label=f"{name}: average {float(dataset.average_gap):.2f} dB")
        gap_axis.fill_between(x, dataset.gap - dataset.gap_sem, dataset.gap + dataset.gap_sem, color=colour, alpha=0.2)
    for axis in (psnr_axis, gap_axis):
        axis.set_xlabel(label(first[coordinate]))
        if log:
            axis.set_xscale("log")
            log_ticks(axis)
    psnr_axis.set_ylabel(label(first.mean_psnr))
    gap_axis.set_ylabel(label(first.gap))
    gap_axis.axhline(0, color="0.5", linewidth=0.8)
    handles += [Line2D([], [], color="0.3", label="train images"),
                Line2D([], [], color="0.3", linestyle="--", label="test images")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize="small",
               frameon=False)
    return root(fig)


def seed_mean(datasets: Sequence[xr.Dataset]) -> xr.Dataset:
    """The gap of one model over its seeds: the mean of ``gap``, ``gap_sem``, ``mean_psnr`` and
    ``average_gap`` over the gap Datasets of its seeds (the one Dataset itself for one seed)."""
    if len(datasets) == 1:
        return datasets[0]
    keep = ["gap", "gap_sem", "mean_psnr", "average_gap"]
    return xr.concat([ds[keep] for ds in datasets], dim="seed", coords="minimal", compat="override").mean("seed")


def seeds_gap_figure(runs: Mapping[str, Sequence[xr.Dataset]], figure: Figure | SubFigure | None = None) -> Figure:
    """:func:`gap_figure` of several models, each given as the gap Datasets of its seeds and drawn as their
    mean (:func:`seed_mean`); ``runs`` maps a model's label to its Datasets."""
    return gap_figure({name: seed_mean(list(datasets)) for name, datasets in runs.items()}, figure=figure)


def average_gap_bars_figure(runs: Mapping[str, Sequence[xr.Dataset]], reference: Collection[str] = (),
                            figure: Figure | SubFigure | None = None) -> Figure:
    """The average gap of each model (``runs``: label -> the gap Datasets of its seeds): a bar at the mean
    over seeds, a dot per seed; the ``reference`` labels (the models the others are compared with, e.g.
    global attention) in grey, the others in colour. A label's " N=" starts a second line. Where every store
    carries ``average_gap_sem`` (stores since science v3), each bar has an error bar of ± its standard error over
    images and seeds (:func:`biasprobe.statistics.combine_seeds`)."""
    from biasprobe.statistics import combine_seeds

    canvas = new_canvas(figure, max(4.0, 1.1 * len(runs) + 1.5), 3.4)
    axis = canvas.subplots()
    with_errors = all("average_gap_sem" in ds for datasets in runs.values() for ds in datasets)
    for position, (name, datasets) in enumerate(runs.items()):
        gaps = np.array([float(ds.average_gap) for ds in datasets])
        error = combine_seeds(gaps, [float(ds.average_gap_sem) for ds in datasets]).se if with_errors else None
        axis.bar(position, gaps.mean(), yerr=error, capsize=3, color="0.6" if name in reference else "C0")
        axis.plot(np.full(len(gaps), position), gaps, "o", color="k", markersize=3)
    axis.set_xticks(range(len(runs)), [name.replace(" N=", "\nN=") for name in runs], fontsize=8)
    axis.set_ylabel("average gap (dB)" + ("\n± s.e. over images and seeds" if with_errors else ""))
    axis.axhline(0, color="0.5", linewidth=0.8)
    return root(canvas)


def nearest_figure(source: Source, count: int = 8, figure: Figure | SubFigure | None = None) -> Figure:
    """Samples (top row) above their nearest training images (bottom row), with the similarity."""
    dataset = as_dataset(source, "memorization")
    count = min(count, dataset.sizes["sample"])
    rows = 2 if "nearest_image" in dataset else 1
    fig = new_canvas(figure, 1.3 * count, 1.5 * rows)
    axes = np.atleast_2d(fig.subplots(rows, count, squeeze=False))
    for i in range(count):
        images = [dataset.sample_image[i]] + ([dataset.nearest_image[i]] if rows == 2 else [])
        for row, image in enumerate(images):
            picture = np.clip(image.values.transpose(1, 2, 0), 0, 1)
            axes[row, i].imshow(picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1)
            axes[row, i].set_axis_off()
        if rows == 2:
            axes[1, i].set_title(f"{float(dataset.nearest_similarity[i]):.2f}", fontsize="small")
    return root(fig)


def plot_gap(*args, **kwargs) -> Figure:
    """Deprecated name of :func:`gap_figure` (removed in the next release)."""
    warnings.warn("plot_gap is deprecated; use gap_figure", DeprecationWarning, stacklevel=2)
    return gap_figure(*args, **kwargs)


def plot_nearest(*args, **kwargs) -> Figure:
    """Deprecated name of :func:`nearest_figure` (removed in the next release)."""
    warnings.warn("plot_nearest is deprecated; use nearest_figure", DeprecationWarning, stacklevel=2)
    return nearest_figure(*args, **kwargs)


def sample_grid(source: Source, gap: int = 2) -> np.ndarray:
    """The samples of a memorization store as one image (C, H', W') in [0, 1]: the samples in the top
    row and, when the store has them, each one's nearest training image below it; ``gap`` pixels of
    white between rows and columns. (For :func:`biasprobe.images.write_image`; no matplotlib.)"""
    dataset = as_dataset(source, "memorization")
    rows = [dataset.sample_image.values]
    if "nearest_image" in dataset:
        rows.append(dataset.nearest_image.values)
    count, channels, height, width = rows[0].shape
    grid = np.ones((channels, len(rows) * (height + gap) - gap, count * (width + gap) - gap), dtype=np.float32)
    for r, images in enumerate(rows):
        for i, image in enumerate(images):
            top, left = r * (height + gap), i * (width + gap)
            grid[:, top : top + height, left : left + width] = image
    return grid
