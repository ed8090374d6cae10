"""The comparison sheet of two checkpoints, drawn from a ``compare`` Dataset alone."""

from __future__ import annotations

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from biasprobe.figures.base import Source, as_dataset, log_ticks, new_canvas


def comparison_figure(source: Source, labels: tuple[str, str] = ("A", "B")) -> Figure:
    """Gap against σ, Jacobian spectra, attention distance per layer and paired samples, A beside B."""
    dataset = as_dataset(source)
    colours = dict(zip(dataset.checkpoint.values, sns.color_palette("colorblind", 2)))
    names = dict(zip(dataset.checkpoint.values, labels))
    fig = new_canvas(None, 12, 7.5)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.4, 1])
    gap_axis, spectrum_axis, layer_axis = top.subplots(1, 3)
    for checkpoint in dataset.checkpoint.values:
        style = {"color": colours[checkpoint], "label": names[checkpoint]}
        row = dataset.sel(checkpoint=checkpoint)
        if "gap" in dataset:
            gap_axis.plot(dataset.sigma, row.gap, **style)
            gap_axis.fill_between(dataset.sigma, row.gap - row.gap_sem, row.gap + row.gap_sem,
                                  color=colours[checkpoint], alpha=0.2)
        spectrum_axis.plot(dataset["rank"], row.eigenvalue, **style)
        if "mean_distance" in dataset:
            layer_axis.plot(dataset.layer, row.mean_distance, marker="o", **style)
    gap_axis.set(xscale="log", xlabel="noise level σ", ylabel="train − test PSNR (dB)", title="generalization gap")
    gap_axis.axhline(0, color="0.5", linewidth=0.8)
    log_ticks(gap_axis)
    if "mean_distance" in dataset:
        layer_axis.set_xticks(dataset.layer.values)
    spectrum_axis.set(xlabel="rank k", ylabel="eigenvalue λ_k",
                      title=f"Jacobian at σ = {dataset.attrs.get('sigma', float('nan')):.3g}; "
                            f"overlap {float(dataset.eigenspace_overlap):.2f}")
    layer_axis.set(xlabel="attention layer", ylabel="mean attention distance (px)", title="attention locality")
    for axis in (gap_axis, spectrum_axis, layer_axis):
        if not axis.lines:
            axis.text(0.5, 0.5, "not available", ha="center", va="center", transform=axis.transAxes)
    handles = [Line2D([], [], color=colours[c], label=names[c]) for c in dataset.checkpoint.values]
    top.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False)  # off the curves
    if "sample_image" in dataset:
        _samples(bottom, dataset, names)
    return fig


def _samples(figure, dataset, names) -> None:
    count = min(8, dataset.sizes["sample"])
    axes = figure.subplots(2, count, squeeze=False)
    for row, checkpoint in enumerate(dataset.checkpoint.values):
        share = float(dataset.memorized_share.sel(checkpoint=checkpoint))
        axes[row, 0].set_ylabel(f"{names[checkpoint]}\n{share:.0%} copies", fontsize="small")
        for i in range(count):
            picture = np.clip(dataset.sample_image.sel(checkpoint=checkpoint)[i].values.transpose(1, 2, 0), 0, 1)
            axes[row, i].imshow(picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1)
            axes[row, i].set_xticks([])
            axes[row, i].set_yticks([])
            if row == 1:
                axes[row, i].set_xlabel(f"{float(dataset.sample_similarity[i]):.2f}", fontsize="small")
    figure.suptitle("samples from the same seeds (A above B; paired similarity below)", fontsize="medium")
