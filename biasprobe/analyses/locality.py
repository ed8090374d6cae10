"""Attention locality per layer, head and noise level (An et al. 2024, Fig. 4, as numbers).

For each attention layer of a denoiser, at noisy images y = x + σz, the attention probabilities
p(q, k) are reduced inside the observer hook (:mod:`biasprobe.analyses.capture`) to the mean
attention distance (pixels), the local mass inside w×w token windows, the attention entropy
(nats) and a histogram of attention over distance, per image and head. Uniform attention over
all N keys gives the reference values stored alongside (its entropy is log N). Definitions:
docs/methods/locality.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
import xarray as xr

from biasprobe.analyses.base import (
    StoreFigure,
    Sweep,
    analysis,
    base_dataset,
    noise_seed,
    prepare,
    single,
    swept,
    with_provenance,
)
from biasprobe.analyses.capture import LocalityObserver, TokenGeometry, capture_attention, locality_metrics
from biasprobe.denoiser import Denoiser
from biasprobe.errors import InputError
from biasprobe.models.attention import ObservableAttention
from biasprobe.noise import noisy
from biasprobe.progress import track

LayerKey = int | str
"""An attention layer by its 1-based position in forward order, or by its module name."""

METRICS = {
    "mean_distance": {
        "long_name": "mean attention distance",
        "units": "pixels",
        "formula": "(1/N) sum_q sum_k p(q,k) * pixels_per_token * ||pos_q - pos_k||_2",
    },
    "local_mass": {
        "long_name": "attention mass inside the window x window token neighbourhood of the query",
        "units": "1",
        "formula": "(1/N) sum_q sum_{k: ||pos_q - pos_k||_inf <= window//2} p(q,k)",
    },
    "entropy": {
        "long_name": "attention entropy",
        "units": "nats",
        "formula": "-(1/N) sum_q sum_k p(q,k) log p(q,k)",
    },
    "distance_histogram": {
        "long_name": "attention mass by query-key distance",
        "units": "1",
        "formula": "(1/N) sum_q sum_{k: d(q,k) in [distance_low, distance_high)} p(q,k)",
    },
}


class AttentionLayer(NamedTuple):
    """One attention module of a denoiser: its 1-based position in forward order, name and module."""

    index: int
    name: str
    module: ObservableAttention


def attention_layers(denoiser: Denoiser, layers: Sequence[LayerKey] | None = None) -> list[AttentionLayer]:
    """The denoiser's attention layers in forward order: all, or those named by 1-based position or name."""
    modules = denoiser.attention_modules()
    if not modules:
        family = denoiser.describe().get("family")
        model = f"this {family} model" if family else "this denoiser"
        raise InputError(
            f"{model} has no attention layers; attention locality needs a model with attention, "
            "such as a DiT or a DDPM UNet"
        )
    every = [
        AttentionLayer(index, name, module) for index, (name, module) in enumerate(modules.items(), start=1)
    ]
    if layers is None:
        return every
    by_key: dict[LayerKey, AttentionLayer] = {layer.index: layer for layer in every}
    by_key.update({layer.name: layer for layer in every})
    unknown = [key for key in layers if key not in by_key]
    if unknown:
        raise InputError(
            f"no attention layer {unknown}: this denoiser has layers 1..{len(every)} ({', '.join(modules)})"
        )
    return sorted({by_key[key] for key in layers}, key=lambda layer: layer.index)


def distance_bin_edges(image_shape: Sequence[int], bin_width: float = 1.0) -> np.ndarray:
    """Histogram edges 0, w, 2w, … in pixels, past the longest distance between pixels of (C, H, W) images."""
    if bin_width <= 0:
        raise InputError(f"the distance bin width must be positive, got {bin_width}")
    longest = math.hypot(image_shape[-2] - 1, image_shape[-1] - 1)
    return bin_width * np.arange(math.floor(longest / bin_width) + 2)


def same_first_sigma(datasets: Mapping[str, xr.Dataset]) -> bool:
    """Whether every store holds the first σ of the first (their profiles can be drawn together)."""
    first = float(next(iter(datasets.values())).sigma[0])
    return all(np.isclose(ds.sigma.values, first, rtol=1e-6).any() for ds in datasets.values())


def locality_numbers(parts: Mapping[str, xr.Dataset]) -> list[tuple[str, str]]:
    """A report's key numbers of locality stores: the mean attention distance per layer, per checkpoint and σ."""
    rows = []
    for name, part in parts.items():
        for s in range(part.sizes["sigma"]):
            at = part.isel(sigma=s).mean_distance.mean(("image", "head"))
            rows.append((f"{name}, σ = {float(part.sigma[s]):.3g}",
                         "mean attention distance per layer (px): " + ", ".join(f"{v:.1f}" for v in at.values)))
    return rows


@analysis(
    "locality", public="locality", sweep=Sweep(needs_images=True),
    figures=[
        StoreFigure("locality", "Attention maps (An et al. Fig. 4, when stored) above the mean attention distance "
                    "per layer and per head", "biasprobe.figures.locality:locality_figure", single),
        StoreFigure("profile", "Mean attention distance per layer, one line per checkpoint",
                    "biasprobe.figures.locality:locality_profile_figure", swept, per_checkpoint=True),
    ],
    together=StoreFigure("profile", "Mean attention distance per layer of every store, at the first σ of the first",
                         "biasprobe.figures.locality:locality_profile_figure", same_first_sigma),
    numbers="biasprobe.analyses.locality:locality_numbers",
)
def locality(
    denoiser: Denoiser,
    images: torch.Tensor,
    sigmas: Sequence[float] | None = None,
    timesteps: Sequence[float] | None = None,
    *,
    layers: Sequence[LayerKey] | None = None,
    windows: Sequence[int] = (3, 5, 7),
    save_maps: bool | Sequence[LayerKey] = False,
    map_queries: Sequence[int] | None = None,
    bin_width: float = 1.0,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = False,
) -> xr.Dataset:
    """Attention locality of ``denoiser`` at the noisy images y = x + σz, per image, σ, layer and head.

    Parameters
    ----------
    denoiser: any :class:`~biasprobe.denoiser.Denoiser` with attention layers.
    images: clean images (B, C, H, W) in [0, 1].
    sigmas, timesteps: the noise levels, as σ on the [0, 1] scale or as diffusion steps t.
    layers: the layers to measure, by 1-based position or module name; all if None.
    windows: odd sizes w of the w×w token neighbourhoods for the local mass.
    save_maps: also keep attention maps, averaged over images and heads, for all measured
        layers (True) or for the listed ones (needed by the Fig. 4 figure).
    map_queries: the query tokens (row-major indices) whose map rows are kept; all if None.
    bin_width: width of the distance histogram bins, in pixels.
    batch_size: images per denoiser call.
    seed: seed of the noise draws (see :func:`biasprobe.analyses.base.noise_seed`).
    progress: show a progress bar.

    Returns
    -------
    Dataset with ``mean_distance``, ``entropy`` (image, sigma, layer, head), ``local_mass``
    (…, window), ``distance_histogram`` (…, distance_bin), the uniform-attention references
    ``*_uniform`` (layer[, window]) and, when asked, ``attention_map`` (sigma, layer, query, key).
    Layers with fewer heads, tokens or no saved map are NaN-padded.
    """
    selected = attention_layers(denoiser, layers)
    windows = [int(window) for window in windows]
    if any(window < 1 or window % 2 == 0 for window in windows):
        raise InputError(f"local-mass windows must be positive odd integers, got {windows}")
    map_layers = _map_layers(denoiser, selected, save_maps)
    images, sigma, steps = prepare(denoiser, images, sigmas, timesteps)
    if batch_size < 1:
        raise InputError(f"batch size must be positive, got {batch_size}")
    edges = distance_bin_edges(denoiser.image_shape, bin_width)
    names = [layer.name for layer in selected]
    observer = LocalityObserver(
        windows, edges, map_layers=[layer.name for layer in map_layers], map_queries=map_queries
    )
    shape = (len(images), len(sigma), len(selected), max(layer.module.heads for layer in selected))
    values = {
        "mean_distance": np.full(shape, np.nan),
        "entropy": np.full(shape, np.nan),
        "local_mass": np.full((*shape, len(windows)), np.nan),
        "distance_histogram": np.full((*shape, len(edges) - 1), np.nan),
    }
    maps: list[dict[str, torch.Tensor]] = []
    batches = [(s, start) for s in range(len(sigma)) for start in range(0, len(images), batch_size)]
    with capture_attention({layer.name: layer.module for layer in selected}, observer), torch.no_grad():
        for s, start in track(batches, f"attention of {len(images)} images at {len(sigma)} σ", enabled=progress,
                                 unit="batches"):
            stop = min(start + batch_size, len(images))
            y = torch.cat(
                [noisy(images[i : i + 1], sigma[s], noise_seed(seed, i, s)) for i in range(start, stop)]
            )
            denoiser.denoise(y, float(sigma[s]))
            for name, metrics in observer.collect(names).items():
                for key, value in metrics.items():
                    values[key][start:stop, s, names.index(name), : value.shape[1]] = value.double().numpy()
            if stop == len(images):
                maps.append({name: total / len(images) for name, total in observer.take_maps().items()})

    dataset = base_dataset(images, sigma, steps)
    dims = ("image", "sigma", "layer", "head")
    for key, value in values.items():
        extra = {"local_mass": ("window",), "distance_histogram": ("distance_bin",)}.get(key, ())
        dataset[key] = (dims + extra, value, METRICS[key])
    dataset = dataset.assign(_uniform_references(selected, windows, edges))
    if map_layers:
        dataset["attention_map"] = _map_array(selected, maps, map_queries)
    dataset = dataset.assign_coords(_layer_coords(selected, windows, edges, shape[-1]))
    return with_provenance(
        dataset,
        denoiser,
        "locality",
        seed,
        windows=windows,
        bin_width=float(bin_width),
        map_layers=[layer.index for layer in map_layers],
    )


def _map_layers(denoiser: Denoiser, selected: list[AttentionLayer], save_maps: bool | Sequence[LayerKey]):
    """The measured layers whose maps ``save_maps`` asks to keep."""
    if isinstance(save_maps, bool):
        return selected if save_maps else []
    chosen = attention_layers(denoiser, save_maps)
    unmeasured = [layer.index for layer in chosen if layer not in selected]
    if unmeasured:
        raise InputError(f"maps of layers {unmeasured} were asked for, but those layers are not measured")
    return chosen


def _grid(layer: AttentionLayer) -> tuple[int, int]:
    """The token grid the layer attended over (set by its forward pass)."""
    if layer.module.grid is None:
        raise RuntimeError(f"attention layer {layer.name} has not run, so its token grid is unknown")
    return layer.module.grid


def _uniform_references(selected: list[AttentionLayer], windows: list[int], edges: np.ndarray) -> dict:
    """Locality of uniform attention p(q, k) = 1/N over each layer's grid: the reference values."""
    references = {"mean_distance": [], "local_mass": [], "entropy": []}
    for layer in selected:
        grid = _grid(layer)
        count = grid[0] * grid[1]
        geometry = TokenGeometry.build(
            grid, layer.module.pixels_per_token, windows, edges, dtype=torch.float64
        )
        uniform = torch.full((1, 1, count, count), 1.0 / count, dtype=torch.float64)
        metrics = locality_metrics(uniform, geometry)
        for key, value in references.items():
            value.append(metrics[key][0, 0].numpy())
    return {
        f"{key}_uniform": (
            ("layer", "window") if key == "local_mass" else ("layer",),
            np.stack(value),
            {**METRICS[key], "long_name": f"{METRICS[key]['long_name']} of uniform attention"},
        )
        for key, value in references.items()
    }


def _map_array(
    selected: list[AttentionLayer], maps: list[dict[str, torch.Tensor]], map_queries: Sequence[int] | None
) -> xr.DataArray:
    """(sigma, layer, query, key) maps, NaN where a layer has no saved map or fewer tokens."""
    keys = max(math.prod(_grid(layer)) for layer in selected if layer.name in maps[0])
    queries = np.arange(keys) if map_queries is None else np.asarray(map_queries)
    array = np.full((len(maps), len(selected), len(queries), keys), np.nan, dtype=np.float32)
    for s, by_layer in enumerate(maps):
        for position, layer in enumerate(selected):
            if layer.name in by_layer:
                rows, count = by_layer[layer.name].shape
                array[s, position, :rows, :count] = by_layer[layer.name].numpy()
    return xr.DataArray(
        array,
        dims=("sigma", "layer", "query", "key"),
        coords={"query": queries, "key": np.arange(keys)},
        attrs={
            "long_name": "attention probability p(query, key)",
            "units": "1",
            "description": "averaged over images and heads",
            "note": "tokens are indexed row-major on the layer's grid (grid_rows, grid_cols)",
        },
    )


def _layer_coords(selected: list[AttentionLayer], windows: list[int], edges: np.ndarray, heads: int) -> dict:
    """Coordinates of the layer, head, window and distance_bin dimensions."""
    grids = [_grid(layer) for layer in selected]
    return {
        "layer": (
            "layer",
            [layer.index for layer in selected],
            {"long_name": "attention layer, 1-based position in forward order"},
        ),
        "layer_name": (
            "layer",
            np.array([layer.name for layer in selected], dtype=object),
            {"long_name": "attention module name"},
        ),
        "grid_rows": ("layer", [grid[0] for grid in grids], {"units": "tokens"}),
        "grid_cols": ("layer", [grid[1] for grid in grids], {"units": "tokens"}),
        "pixels_per_token": (
            "layer",
            [layer.module.pixels_per_token for layer in selected],
            {"units": "pixels"},
        ),
        "attention_window": (
            "layer",
            [layer.module.window or 0 for layer in selected],
            {"long_name": "the layer's own k×k attention window (0: global attention)", "units": "tokens"},
        ),
        "head": ("head", np.arange(heads), {"long_name": "attention head"}),
        "window": (
            "window",
            windows,
            {"long_name": "side of the token neighbourhood for local_mass", "units": "tokens"},
        ),
        "distance_bin": (
            "distance_bin",
            (edges[:-1] + edges[1:]) / 2,
            {"long_name": "bin centre", "units": "pixels"},
        ),
        "distance_low": ("distance_bin", edges[:-1], {"units": "pixels"}),
        "distance_high": ("distance_bin", edges[1:], {"units": "pixels"}),
    }
