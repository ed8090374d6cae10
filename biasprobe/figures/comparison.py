"""The comparison sheet of two checkpoints, drawn from a ``compare`` Dataset alone."""

from __future__ import annotations

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from biasprobe.figures.base import Source, as_dataset, checkpoint_label, label, log_ticks, new_canvas


def comparison_figure(source: Source, labels: tuple[str, str] = ("A", "B")) -> Figure:
    """Gap against σ, Jacobian spectra, attention distance per layer and paired samples, A beside B;
    panels the Dataset has nothing for (no attention in UNets, no training data, a comparison of
    stored results of one analysis) are left out."""
    dataset = as_dataset(source, "compare")
    colours = dict(zip(dataset.checkpoint.values, sns.color_palette("colorblind", 2)))
    names = dict(zip(dataset.checkpoint.values, labels))
    panels = (["gap"] * ("gap" in dataset) + ["spectrum"] * ("eigenvalue" in dataset)
              + ["locality"] * ("mean_distance" in dataset))
    fig = new_canvas(None, 4 * len(panels), 7.5 if "sample_image" in dataset else 4.2)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.4, 1]) if "sample_image" in dataset else (fig, None)
    axes = dict(zip(panels, np.atleast_1d(top.subplots(1, len(panels)))))
    for checkpoint in dataset.checkpoint.values:
        style = {"color": colours[checkpoint], "label": names[checkpoint]}
        row = dataset.sel(checkpoint=checkpoint)
        if "gap" in axes:
            axes["gap"].plot(dataset.sigma, row.gap, **style)
            axes["gap"].fill_between(dataset.sigma, row.gap - row.gap_sem, row.gap + row.gap_sem,
                                     color=colours[checkpoint], alpha=0.2)
        if "spectrum" in axes:
            axes["spectrum"].plot(dataset["rank"], row.eigenvalue, **style)
        if "locality" in axes:
            axes["locality"].plot(dataset.layer, row.mean_distance, marker="o", **style)
    if "gap" in axes:
        axes["gap"].set(xscale="log", xlabel=label(dataset.sigma), ylabel=label(dataset.gap),
                        title="generalization gap")
        axes["gap"].axhline(0, color="0.5", linewidth=0.8)
        log_ticks(axes["gap"])
    if "spectrum" in axes:
        overlap = f"; overlap {float(dataset.eigenspace_overlap):.2f}" if "eigenspace_overlap" in dataset else ""
        axes["spectrum"].set(xlabel=label(dataset["rank"]), ylabel=label(dataset.eigenvalue),
                             title=f"Jacobian at σ = {dataset.attrs['sigma']:.3g}{overlap}")
    if "locality" in axes:
        axes["locality"].set(xlabel=label(dataset.layer), ylabel=label(dataset.mean_distance),
                             title="attention locality")
        axes["locality"].set_xticks(dataset.layer.values)
    handles = [Line2D([], [], color=colours[c], label=names[c]) for c in dataset.checkpoint.values]
    top.legend(handles=handles, loc="outside lower center", ncols=2, fontsize="small", frameon=False)  # off curves and titles
    if bottom is not None:
        _samples(bottom, dataset, names)
    return fig


def comparison_store_figure(source: Source) -> Figure:
    """:func:`comparison_figure` of a compare store, A and B labelled by their checkpoints."""
    dataset = as_dataset(source, "compare")
    return comparison_figure(dataset, (checkpoint_label(dataset.attrs.get("checkpoint"), "A"),
                                       checkpoint_label(dataset.attrs.get("checkpoint_b"), "B")))


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
