"""Figures of attention locality, drawn from a locality Dataset (or its store) alone.

- :func:`attention_maps_figure`: An et al. Fig. 4 — every other layer's HW×HW attention map and
  one query's token attention.
- :func:`attention_rows_figure`: Fig. 4 as ``report paper`` draws it, one row of maps per labelled store.
- :func:`locality_profile_figure`: a locality metric against layer, one line per σ or per checkpoint.
- :func:`heads_figure`: a locality metric per layer and head as a heat map.
- :func:`locality_figure`: the three together (what ``biasprobe locality --figure`` draws).

Every function takes an optional ``figure`` (a Figure or SubFigure) to draw into and returns the
root :class:`~matplotlib.figure.Figure`; ``sigma`` is a noise level (the nearest stored one); axes
and colour bars are labelled from the variables' ``long_name``/``units``. Figures are made without
pyplot, so they render with Agg and leave no global state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr
from matplotlib.figure import Figure, SubFigure

from biasprobe.errors import InputError
from biasprobe.figures.base import Source, as_dataset, as_datasets, at_sigma, label, new_canvas, root

PROFILE_METRICS = ("mean_distance", "local_mass", "entropy")


def every_other_layer(layers: Sequence[int]) -> list[int]:
    """Layers 2, 4, 6, … of ``layers`` (Fig. 4's selection), or all of them if there is only one."""
    return list(layers[1::2]) or list(layers)


def _metric(dataset: xr.Dataset, metric: str, window: int) -> tuple[xr.DataArray, xr.DataArray | None]:
    """The metric per (image, sigma, layer, head), and its uniform-attention reference per layer."""
    if metric not in PROFILE_METRICS:
        raise InputError(f"unknown locality metric {metric!r}; choose one of {', '.join(PROFILE_METRICS)}")
    values, reference = dataset[metric], dataset.get(f"{metric}_uniform")
    if metric == "local_mass":
        if window not in dataset.window.values:
            raise InputError(
                f"no local mass at window {window} in this store; it has {list(dataset.window.values)}"
            )
        values, reference = values.sel(window=window), reference.sel(window=window)
    return values, reference


def _metric_label(dataset: xr.Dataset, metric: str, window: int) -> str:
    """The metric's label from its attrs, the window's side written in for the local mass."""
    return label(dataset[metric]).replace("window x window", f"{window}×{window}")


def _layer_title(layer: xr.Dataset) -> str:
    window = int(layer.attention_window)
    return f"layer {int(layer.layer)}" + (f" ({window}×{window})" if window else "")


def attention_maps_figure(
    source: Source,
    *,
    sigma: float | None = None,
    layers: Sequence[int] | None = None,
    vmax: float = 0.1,
    query: int | None = None,
    cmap: str = "viridis",
    figure: Figure | SubFigure | None = None,
    scale: str = "clip",
) -> Figure:
    """An et al. Fig. 4: attention maps of layers 2, 4, … side by side, token attention below.

    Top row: each layer's (query × key) map, averaged over images and heads, divided by its
    maximum a = A / max A, and coloured by ``scale``: ``"clip"`` (the paper's) on [0, ``vmax``], every
    value above ``vmax`` one colour, which shows the local bands but leaves global layers solid;
    ``"full"`` on [0, 1], unclipped; ``"log"`` as log₁₀ a on [−3, 0]. Bottom row: the row of ``query``
    (row-major token index; default the centre token) reshaped to the layer's token grid, divided by
    its maximum and coloured the same way; the query is marked with a cross. The colour bar and the
    title say which scale is drawn. Needs maps in the store (``save_maps``); ``layers`` defaults to
    every other layer among them.
    """
    if scale not in SCALES:
        raise InputError(f"{{scale}} must be one of {', '.join(SCALES)}, got {scale!r}", parameters=["scale"])
    dataset = at_sigma(as_dataset(source, "locality"), sigma)
    if "attention_map" not in dataset:
        raise InputError("this store has no attention maps: run locality with {save_maps}",
                         parameters={"save_maps": "save_maps=True"})
    mapped = [
        int(layer)
        for layer in dataset.layer.values
        if np.isfinite(dataset.attention_map.sel(layer=layer)).any()
    ]
    if layers is None:
        layers = [
            layer for layer in every_other_layer(list(dataset.layer.values)) if layer in mapped
        ] or mapped
    missing = [layer for layer in layers if layer not in mapped]
    if missing:
        raise InputError(f"no saved maps for layers {missing}; this store has maps of layers {mapped}")
    canvas = new_canvas(figure, 2.0 * len(layers) + 0.8, 4.4)
    axes = canvas.subplots(2, len(layers), squeeze=False)
    for column, layer_index in enumerate(layers):
        layer = dataset.sel(layer=layer_index)
        rows, cols = int(layer.grid_rows), int(layer.grid_cols)
        tokens = rows * cols
        attention = layer.attention_map.isel(
            query=np.flatnonzero(layer["query"].values < tokens), key=slice(0, tokens)
        )
        limits = {"clip": (0, vmax), "full": (0, 1), "log": (LOG_FLOOR, 0)}[scale]
        image = axes[0, column].imshow(_scaled(attention.values / np.nanmax(attention.values), scale),
                                       vmin=limits[0], vmax=limits[1], cmap=cmap, interpolation="nearest")
        axes[0, column].set_title(_layer_title(layer), fontsize=9)
        chosen = (rows // 2) * cols + cols // 2 if query is None else query
        saved = list(attention["query"].values)
        if chosen not in saved:
            if query is not None:
                raise InputError(f"query {query} is not among the saved map rows of layer {layer_index}")
            chosen = saved[0]
        row = attention.sel(query=chosen).values.reshape(rows, cols)
        axes[1, column].imshow(_scaled(row / row.max(), scale), vmin=limits[0], vmax=limits[1], cmap=cmap,
                               interpolation="nearest")
        axes[1, column].plot(chosen % cols, chosen // cols, "+", color="red", markersize=8)
        axes[1, column].set_title(f"query {chosen} ({chosen // cols}, {chosen % cols})", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("query token")
    axes[1, 0].set_ylabel("token attention")
    named = label(dataset.attention_map)
    drawn = {"clip": f"{named} / max, clipped at {vmax:g} (An et al.)", "full": f"{named} / max, unclipped",
             "log": f"log₁₀({named} / max), from {LOG_FLOOR:g}"}[scale]
    canvas.colorbar(image, ax=axes[:, -1], shrink=0.8, label=drawn)
    canvas.suptitle(f"attention maps, σ = {float(dataset.sigma):g}; colour: {SCALES[scale]}", fontsize=10)
    return root(canvas)


SCALES = {"clip": "clipped at a fraction of the maximum (the paper's)", "full": "whole range, unclipped",
          "log": "log scale"}
"""The colour scales of :func:`attention_maps_figure` (``scale``), with the words its title uses."""
LOG_FLOOR = -3.0
"""The lower end of the ``"log"`` scale: log₁₀ of a thousandth of the maximum."""


def _scaled(values: np.ndarray, scale: str) -> np.ndarray:
    """Values divided by their maximum, as the ``scale`` colours them (log₁₀, floored, for ``"log"``)."""
    if scale != "log":
        return values
    with np.errstate(divide="ignore"):
        return np.maximum(np.log10(values), LOG_FLOOR)


def attention_rows_figure(stores: Mapping[str, xr.Dataset]) -> Figure:
    """One row of :func:`attention_maps_figure` per labelled locality Dataset (saved with maps), titled by
    label and σ."""
    figure = Figure(figsize=(13, 4.4 * len(stores)), layout="constrained")
    rows = figure.subfigures(len(stores), 1, squeeze=False)[:, 0]
    for row, (name, dataset) in zip(rows, stores.items()):
        attention_maps_figure(dataset, figure=row)
        row.suptitle(f"{name}: attention maps, σ = {float(dataset.sigma[0]):g}", fontsize=10)
    return figure


def attention_and_layers_figure(cells: Mapping[str, Sequence[xr.Dataset]]) -> Figure:
    """An et al. Fig. 4 under science v3: one row of :func:`attention_maps_figure` per labelled cell (its first
    seed's store), then the mean attention distance per layer of every cell (mean over heads, images and σ),
    with error bars: the standard error over images for one seed, the s.d. over seeds for several."""
    figure = Figure(figsize=(13, 4.4 * len(cells) + 3.6), layout="constrained")
    rows = figure.subfigures(len(cells) + 1, 1, squeeze=False, height_ratios=[4.4] * len(cells) + [3.6])[:, 0]
    for row, (name, stores) in zip(rows, cells.items()):
        attention_maps_figure(stores[0], figure=row)
        row.suptitle(f"{name}: attention maps, σ = {float(stores[0].sigma[0]):g}", fontsize=10)
    axis = rows[-1].subplots()
    for name, stores in cells.items():
        per_seed = np.stack([ds.mean_distance.mean([d for d in ds.mean_distance.dims if d not in ("layer", "image")])
                             .transpose("image", "layer").values for ds in stores])  # (seed, image, layer)
        if len(stores) > 1:
            means = per_seed.mean(axis=1)
            value, error, what = means.mean(0), means.std(0, ddof=1), f"{len(stores)} seeds: ± s.d."
        else:
            value, error = per_seed[0].mean(0), per_seed[0].std(0, ddof=1) / np.sqrt(per_seed.shape[1])
            what = "1 seed: ± s.e. over images"
        axis.errorbar(stores[0].layer.values, value, yerr=error, marker="o", markersize=3, capsize=2,
                      label=f"{name} ({what})")
    first = next(iter(cells.values()))[0]
    axis.set_xlabel(label(first.layer))
    axis.set_ylabel(label(first.mean_distance))
    axis.set_xticks(first.layer.values)
    axis.legend(fontsize=7)
    rows[-1].suptitle("mean attention distance per layer (over heads, images and σ)", fontsize=10)
    return figure


def locality_profile_figure(
    sources: Source | Sequence[Source] | Mapping[str, Source],
    metric: str = "mean_distance",
    *,
    window: int = 3,
    sigma: float | None = None,
    figure: Figure | SubFigure | None = None,
) -> Figure:
    """A locality metric against layer: mean over images and heads, band ±1 s.d. over images.

    One store: one line per σ. Several (a sequence, a mapping from label to store, or a sweep
    store): one line per checkpoint, at ``sigma`` (default: the first σ of the first store). The dashed line is
    the value uniform attention over all tokens would give.
    """
    runs = as_datasets(sources, "locality")
    first = next(iter(runs.values()))
    if len(runs) == 1:
        lines = (
            {f"σ = {float(s):g}": first.sel(sigma=s) for s in first.sigma.values}
            if sigma is None
            else {f"σ = {sigma:g}": at_sigma(first, sigma)}
        )
    else:
        sigma = float(first.sigma.values[0]) if sigma is None else sigma
        lines = {name: at_sigma(ds, sigma) for name, ds in runs.items()}
    canvas = new_canvas(figure, 5.0, 3.4)
    ax = canvas.subplots()
    for name, ds in lines.items():
        values, _ = _metric(ds, metric, window)
        per_image = values.mean("head")
        mean, spread = per_image.mean("image"), per_image.std("image")
        (line,) = ax.plot(ds.layer, mean, marker="o", markersize=3, label=name)
        ax.fill_between(
            ds.layer, mean - spread, mean + spread, color=line.get_color(), alpha=0.2, linewidth=0
        )
    _, reference = _metric(first, metric, window)
    ax.plot(first.layer, reference, "--", color="grey", label="uniform attention")
    ax.set_xlabel(label(first.layer))
    ax.set_ylabel(_metric_label(first, metric, window))
    ax.set_xticks(first.layer.values)
    ax.legend(fontsize=7, title=None if len(runs) == 1 else f"σ = {sigma:g}", title_fontsize=7)
    return root(canvas)


def heads_figure(
    source: Source,
    metric: str = "mean_distance",
    *,
    window: int = 3,
    cmap: str = "magma",
    figure: Figure | SubFigure | None = None,
) -> Figure:
    """A locality metric per layer (rows) and head (columns), mean over images; one panel per σ."""
    dataset = as_dataset(source, "locality")
    values, _ = _metric(dataset, metric, window)
    table = values.mean("image").transpose("sigma", "layer", "head")
    canvas = new_canvas(
        figure, 1.2 + 0.5 * table.sizes["head"] * table.sizes["sigma"], 0.6 + 0.3 * table.sizes["layer"]
    )
    axes = canvas.subplots(1, table.sizes["sigma"], squeeze=False)[0]
    limits = {"vmin": float(table.min()), "vmax": float(table.max())}
    for ax, panel in zip(axes, table, strict=True):
        image = ax.imshow(panel.values, cmap=cmap, aspect="auto", **limits)
        ax.set_title(f"σ = {float(panel.sigma):g}", fontsize=9)
        ax.set_xticks(range(panel.sizes["head"]), panel["head"].values)
        ax.set_yticks(range(panel.sizes["layer"]), panel.layer.values)
        ax.set_xlabel(label(panel["head"]))
    axes[0].set_ylabel(label(table.layer))
    canvas.colorbar(image, ax=list(axes), label=_metric_label(dataset, metric, window))
    return root(canvas)


def locality_figure(
    source: Source,
    *,
    metric: str = "mean_distance",
    window: int = 3,
    vmax: float = 0.1,
    scale: str = "clip",
) -> Figure:
    """Overview: the Fig. 4 maps (when the store has them, coloured by ``scale``, see
    :func:`attention_maps_figure`) above the profile and the head heat map."""
    dataset = as_dataset(source, "locality")
    has_maps = "attention_map" in dataset
    figure = Figure(
        figsize=(
            max(10.0, 2.0 * len(every_other_layer(list(dataset.layer.values))) + 0.8),
            8.2 if has_maps else 3.8,
        ),
        layout="constrained",
    )
    if has_maps:
        top, bottom = figure.subfigures(2, 1, height_ratios=[4.4, 3.8])
        attention_maps_figure(dataset, vmax=vmax, figure=top, scale=scale)
    else:
        bottom = figure
    left, right = bottom.subfigures(1, 2, width_ratios=[1.3, 1])
    locality_profile_figure(dataset, metric, window=window, figure=left)
    heads_figure(dataset, metric, window=window, figure=right)
    return figure
