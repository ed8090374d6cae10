"""Attention locality against known answers: brute force, uniform attention, windowed DiTs, the CLI."""

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

import biasprobe as bp
from biasprobe.analyses.capture import LocalityObserver, TokenGeometry, capture_attention, locality_metrics
from biasprobe.analyses.locality import distance_bin_edges, locality
from biasprobe.figures.locality import (
    attention_maps_figure,
    heads_figure,
    locality_figure,
    locality_profile_figure,
)
from biasprobe.models import GridAttention

from tests.conftest import run_cli, tiny_checkpoint
from tests.cli.test_command_line import assert_one_line_error

WINDOWS = (3, 5, 7)
REPOSITORY = Path(__file__).resolve().parents[2]


class TokenMixer(nn.Module):
    """A wrapped-callable denoiser: pixels as tokens of one GridAttention, with chosen weights."""

    def __init__(self, channels: int = 1, heads: int = 2, window=None, scale: float = 1.0, seed: int = 0):
        super().__init__()
        width = 4 * heads
        generator = torch.Generator().manual_seed(seed)
        self.embed = nn.Linear(channels, width)
        self.attention = GridAttention(width, heads, window=window)
        self.out = nn.Linear(width, channels)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(scale * torch.randn(param.shape, generator=generator))

    def forward(self, y, sigma):
        batch, channels, rows, cols = y.shape
        tokens = self.embed(y.flatten(2).transpose(1, 2))
        tokens = self.attention(tokens, (rows, cols))
        return y - self.out(tokens).transpose(1, 2).reshape(batch, channels, rows, cols)


def brute_force(probs: np.ndarray, grid, pixels_per_token, windows, edges):
    """The metrics of one head's (N, N) map with explicit loops over queries and keys."""
    positions = list(itertools.product(range(grid[0]), range(grid[1])))
    count = len(positions)
    distance, mass, entropy = 0.0, np.zeros(len(windows)), 0.0
    histogram = np.zeros(len(edges) - 1)
    for q, (qr, qc) in enumerate(positions):
        for k, (kr, kc) in enumerate(positions):
            p = probs[q, k]
            d = pixels_per_token * math.hypot(qr - kr, qc - kc)
            distance += p * d
            for w, window in enumerate(windows):
                mass[w] += p * (max(abs(qr - kr), abs(qc - kc)) <= window // 2)
            entropy -= p * math.log(p) if p > 0 else 0.0
            histogram[min(np.searchsorted(edges, d, side="right") - 1, len(histogram) - 1)] += p
    return {
        "mean_distance": distance / count,
        "local_mass": mass / count,
        "entropy": entropy / count,
        "distance_histogram": histogram / count,
    }


def test_metrics_match_brute_force():
    grid, pixels_per_token = (3, 4), 2
    count = grid[0] * grid[1]
    edges = distance_bin_edges((1, 6, 8))
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 3, count, count, generator=generator, dtype=torch.float64)
    scores[..., 0, 5:] = -torch.inf  # exact zeros: 0 log 0 must count as 0
    probs = scores.softmax(-1)
    geometry = TokenGeometry.build(grid, pixels_per_token, WINDOWS, edges, dtype=torch.float64)
    metrics = locality_metrics(probs, geometry)
    for b, h in itertools.product(range(2), range(3)):
        expected = brute_force(probs[b, h].numpy(), grid, pixels_per_token, WINDOWS, edges)
        for key, value in expected.items():
            np.testing.assert_allclose(metrics[key][b, h].numpy(), value, rtol=1e-12, atol=1e-12, err_msg=key)


def test_uniform_attention_gives_the_analytic_values():
    """Zero query/key weights make attention exactly uniform: mean distance is the grid's average
    pairwise distance, entropy log N, local mass the average neighbourhood share."""
    mixer = TokenMixer()
    width = mixer.attention.proj.in_features
    with torch.no_grad():
        mixer.attention.qkv.weight[: 2 * width].zero_()
        mixer.attention.qkv.bias[: 2 * width].zero_()
    grid = (5, 6)
    denoiser = bp.Denoiser.wrap(mixer, (1, *grid))
    result = locality(denoiser, torch.rand(2, 1, *grid), sigmas=[0.1, 0.3])
    pairs = list(itertools.product(itertools.product(range(grid[0]), range(grid[1])), repeat=2))
    count = grid[0] * grid[1]
    average_distance = sum(math.hypot(a[0] - b[0], a[1] - b[1]) for a, b in pairs) / len(pairs)
    neighbours = [
        sum(max(abs(a[0] - b[0]), abs(a[1] - b[1])) <= w // 2 for a, b in pairs) / len(pairs) for w in WINDOWS
    ]
    np.testing.assert_allclose(result.mean_distance, average_distance, rtol=1e-5)
    np.testing.assert_allclose(result.entropy, math.log(count), rtol=1e-5)
    np.testing.assert_allclose(
        result.local_mass, np.broadcast_to(neighbours, result.local_mass.shape), rtol=1e-5
    )
    np.testing.assert_allclose(result.mean_distance_uniform, average_distance, rtol=1e-12)
    np.testing.assert_allclose(result.entropy_uniform, math.log(count), rtol=1e-12)
    np.testing.assert_allclose(result.local_mass_uniform[0], neighbours, rtol=1e-12)


@pytest.fixture(scope="module")
def windowed_dit_path(tmp_path_factory):
    """A 16×16 DiT with 2×2 patches (8×8 tokens) and windows 3, 5 in its first layers."""
    path = tmp_path_factory.mktemp("dit") / "windowed.pt"
    return tiny_checkpoint(path, "dit", image_size=16, windows=[3, 5, None, None])


@pytest.fixture
def windowed_dit(windowed_dit_path):
    return bp.load(windowed_dit_path)


def test_windowed_layers_keep_all_mass_inside_their_window(windowed_dit):
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    result = locality(windowed_dit, images, sigmas=[0.05, 0.5])
    assert list(result.attention_window.values) == [3, 5, 0, 0]
    for layer, window in ((1, 3), (2, 5)):
        at = result.sel(layer=layer)
        np.testing.assert_allclose(at.local_mass.sel(window=window), 1.0, atol=1e-6)
        radius = math.sqrt(2) * (window // 2) * int(at.pixels_per_token)
        assert float(at.mean_distance.max()) <= radius + 1e-5
    assert float(result.local_mass.sel(layer=1, window=3).min()) > float(
        result.local_mass.sel(layer=3, window=3).max()
    )
    np.testing.assert_allclose(result.distance_histogram.sum("distance_bin"), 1.0, atol=1e-5)
    assert (result.entropy <= result.entropy_uniform + 1e-6).all()


def test_capture_leaves_outputs_unchanged(windowed_dit, tmp_path):
    ddpm = bp.load(tiny_checkpoint(tmp_path / "ddpm.pt", "unet-ddpm", attention_resolutions=[8]))
    for denoiser in windowed_dit, ddpm:
        with torch.no_grad():
            y = torch.rand(2, *denoiser.image_shape, generator=torch.Generator().manual_seed(2))
            plain = denoiser.denoise(y, 0.2)
            observer = LocalityObserver(WINDOWS, distance_bin_edges(denoiser.image_shape))
            with capture_attention(denoiser.attention_modules(), observer):
                captured = denoiser.denoise(y, 0.2)
        torch.testing.assert_close(captured, plain, rtol=1e-5, atol=1e-5)
        assert plain.abs().max() > 0


def test_observers_are_removed_even_after_an_error(windowed_dit):
    modules = windowed_dit.attention_modules()
    with pytest.raises(KeyboardInterrupt), capture_attention(modules, lambda *args: None):
        assert all(m.observer is not None for m in modules.values())
        raise KeyboardInterrupt
    assert all(m.observer is None for m in modules.values())


def test_a_layer_run_twice_per_call_is_an_error():
    class Twice(TokenMixer):
        def forward(self, y, sigma):
            return super().forward(super().forward(y, sigma), sigma)

    with pytest.raises(RuntimeError, match="ran twice"):
        locality(bp.Denoiser.wrap(Twice(), (1, 4, 4)), torch.rand(1, 1, 4, 4), sigmas=[0.1])


def test_results_do_not_depend_on_batching():
    denoiser = bp.Denoiser.wrap(TokenMixer(scale=0.5), (1, 6, 6))
    images = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    one = locality(denoiser, images, sigmas=[0.1, 0.4], batch_size=1, save_maps=True)
    many = locality(denoiser, images, sigmas=[0.1, 0.4], batch_size=3, save_maps=True)
    for key in ("mean_distance", "local_mass", "entropy", "distance_histogram", "attention_map"):
        np.testing.assert_allclose(one[key], many[key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_saved_maps_are_image_and_head_means_and_query_rows_subset():
    denoiser = bp.Denoiser.wrap(TokenMixer(scale=0.5), (1, 4, 5))
    images = torch.rand(3, 1, 4, 5, generator=torch.Generator().manual_seed(4))
    full = locality(denoiser, images, sigmas=[0.2], save_maps=True)
    rows = locality(denoiser, images, sigmas=[0.2], save_maps=True, map_queries=[0, 7, 19])
    maps = full.attention_map.isel(sigma=0, layer=0)
    np.testing.assert_allclose(maps.sum("key"), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        rows.attention_map.isel(sigma=0, layer=0), maps.sel(query=[0, 7, 19]), atol=1e-7
    )
    # mean distance of the image- and head-averaged map = mean over images and heads of the metric
    geometry = TokenGeometry.build((4, 5), 1, WINDOWS, distance_bin_edges((1, 4, 5)), dtype=torch.float64)
    from_map = locality_metrics(torch.as_tensor(maps.values, dtype=torch.float64)[None, None], geometry)
    np.testing.assert_allclose(from_map["mean_distance"].item(), full.mean_distance.mean(), rtol=1e-5)


def test_unet_layers_of_different_grids_are_padded(tmp_path):
    ddpm = bp.load(tiny_checkpoint(tmp_path / "ddpm.pt", "unet-ddpm", attention_resolutions=[8]))
    result = locality(ddpm, torch.rand(2, 1, 8, 8), sigmas=[0.1], save_maps=True)
    tokens = (result.grid_rows * result.grid_cols).values
    assert set(tokens) == {64, 16} and set(result.pixels_per_token.values) == {1, 2}
    small = int(np.flatnonzero(tokens == 16)[0])
    assert np.isnan(result.attention_map.isel(layer=small, key=slice(16, None))).all()
    np.testing.assert_allclose(
        result.attention_map.isel(layer=small, query=slice(0, 16), key=slice(0, 16)).sum("key"),
        1.0,
        atol=1e-5,
    )


def test_layer_selection_and_errors(windowed_dit, tmp_path):
    images = torch.rand(1, 1, 16, 16)
    result = locality(windowed_dit, images, sigmas=[0.1], layers=[4, "blocks.1.attn"], save_maps=[4])
    assert list(result.layer.values) == [2, 4]
    assert list(result.layer_name.values) == ["blocks.1.attn", "blocks.3.attn"]
    assert (
        np.isnan(result.attention_map.sel(layer=2)).all()
        and np.isfinite(result.attention_map.sel(layer=4)).all()
    )
    with pytest.raises(bp.InputError, match="no attention layer"):
        locality(windowed_dit, images, sigmas=[0.1], layers=[9])
    with pytest.raises(bp.InputError, match="not measured"):
        locality(windowed_dit, images, sigmas=[0.1], layers=[1], save_maps=[2])
    bias_free = bp.load(tiny_checkpoint(tmp_path / "bf.pt", "unet-bf"))
    with pytest.raises(bp.InputError, match="no attention layers"):
        locality(bias_free, torch.rand(1, 1, 8, 8), sigmas=[0.1])


def test_figures_from_a_store(windowed_dit, tmp_path):
    result = locality(windowed_dit, torch.rand(2, 1, 16, 16), sigmas=[0.1, 0.3], save_maps=[2, 4])
    store = bp.save(result, tmp_path / "locality.zarr")
    for figure in (
        locality_figure(store),
        attention_maps_figure(store, sigma=0.3, vmax=0.2, query=0),
        locality_profile_figure({"a": store, "b": result}, "local_mass", window=5),
        heads_figure(store, "entropy"),
    ):
        assert isinstance(figure, Figure)
        figure.savefig(tmp_path / "figure.png")
    assert (
        len(attention_maps_figure(store).axes) == 2 * 2 + 1
    )  # layers 2 and 4, maps and token rows, colour bar
    with pytest.raises(bp.InputError, match="no attention maps"):
        attention_maps_figure(result.drop_vars("attention_map"))
    with pytest.raises(bp.InputError, match="sigma=0.7"):
        attention_maps_figure(store, sigma=0.7)


@pytest.mark.parametrize(
    "family, overrides, images, note",
    [
        ("dit", {"windows": [3, None, None, None]}, [], "shipped example images"),
        ("unet-ddpm", {"attention_resolutions": [8]}, ["--data", "discs", "--n", "3"], ""),
    ],
)
def test_cli_writes_store_and_figure(tmp_path, family, overrides, images, note):
    checkpoint = tiny_checkpoint(tmp_path / f"{family}.pt", family, **overrides)
    store, figure = tmp_path / "out.zarr", tmp_path / "fig.png"
    result = run_cli(
        "locality", checkpoint, *images, "--sigma", "0.1,0.2", "--out", store, "--figure", figure
    )
    assert result.returncode == 0, result.stderr
    assert note in result.stdout and "attention locality" in result.stdout
    dataset = bp.open(store)
    assert dataset.attrs["analysis"] == "locality" and dataset.sizes["sigma"] == 2
    assert dataset.sizes["image"] == (3 if images else 2)
    assert "attention_map" in dataset and figure.stat().st_size > 0


def test_cli_with_image_and_layers_writes_the_default_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint = tiny_checkpoint(tmp_path / "models" / "dit.pt", "dit", image_size=32, channels=3)
    image = REPOSITORY / "data" / "images" / "chelsea-32.png"
    result = run_cli("locality", checkpoint, "--image", image, "--t", "10,100", "--layers", "1,3", "--windows", "3")
    assert result.returncode == 0, result.stderr
    dataset = bp.open(tmp_path / "dit.locality.zarr")  # NAME.ANALYSIS.zarr in the current folder
    assert list(dataset.layer.values) == [1, 3] and list(dataset.window.values) == [3]
    np.testing.assert_allclose(dataset.t, [10, 100])
    assert "attention_map" not in dataset


def test_cli_errors_are_one_line(tmp_path):
    bias_free = tiny_checkpoint(tmp_path / "bf.pt", "unet-bf")
    assert_one_line_error(run_cli("locality", bias_free), "no attention layers")
    dit = tiny_checkpoint(tmp_path / "dit.pt", "dit")
    image = REPOSITORY / "data" / "images" / "camera-32.png"
    assert_one_line_error(
        run_cli("locality", dit, "--image", image, "--data", "discs"), "either --image or --data"
    )


def test_a_capture_with_fused_output_gives_the_same_output_and_metrics(windowed_dit, tmp_path):
    """fused_output: the GridAttention layers compute their output by fused attention and the probabilities beside
    it (the DDPM UNet's layers, which are not GridAttention, keep the explicit path)."""
    ddpm = bp.load(tiny_checkpoint(tmp_path / "ddpm.pt", "unet-ddpm", attention_resolutions=[8]))
    for denoiser in windowed_dit, ddpm:
        names = list(denoiser.attention_modules())
        y = torch.rand(2, *denoiser.image_shape, generator=torch.Generator().manual_seed(3))
        results = {}
        for fused in (False, True):
            observer = LocalityObserver(WINDOWS, distance_bin_edges(denoiser.image_shape))
            with torch.no_grad(), capture_attention(denoiser.attention_modules(), observer, fused_output=fused):
                output = denoiser.denoise(y, 0.2)
            results[fused] = (output, observer.collect(names))
        torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-5, atol=1e-5)
        for name in names:
            for key, value in results[False][1][name].items():
                torch.testing.assert_close(results[True][1][name][key], value, rtol=1e-5, atol=1e-6)
        assert not any(getattr(m, "fused_output", False) for m in denoiser.attention_modules().values())
