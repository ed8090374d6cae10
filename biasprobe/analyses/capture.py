"""Capture of attention probabilities, reduced to locality metrics inside the observer hook.

Torch only (no xarray), so that it runs wherever the models run. :mod:`biasprobe.analyses.locality`
builds the labelled Dataset from what :class:`LocalityObserver` keeps.

For one head over N tokens on an (h, w) grid whose tokens stand for s×s pixel patches
(s = ``pixels_per_token``), token centres at pixel positions s·(row, col), and probabilities
p(q, k) (each query row sums to 1), with d(q, k) = s‖pos_q − pos_k‖₂ and 𝒩_w(q) the w×w window
of tokens centred on q (‖pos_q − pos_k‖_∞ ≤ ⌊w/2⌋, clipped at the border):

- mean attention distance  d̄   = (1/N) Σ_q Σ_k p(q, k) d(q, k)                      [pixels]
- local mass at window w   m_w = (1/N) Σ_q Σ_{k ∈ 𝒩_w(q)} p(q, k)                   [0, 1]
- attention entropy        H   = −(1/N) Σ_q Σ_k p(q, k) log p(q, k)                 [nats, ≤ log N]
- distance histogram       h_b = (1/N) Σ_q Σ_{k : d(q, k) ∈ [e_b, e_{b+1})} p(q, k)   [sums to 1]
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import torch

from biasprobe.models.attention import GridAttention, window_mask

NamedObserver = Callable[[str, GridAttention, torch.Tensor], None]
"""``observer(name, module, probs)`` with ``probs`` of shape (B, heads, N, N)."""


@contextlib.contextmanager
def capture_attention(modules: Mapping[str, GridAttention], observer: NamedObserver) -> Iterator[None]:
    """Within the block, every forward of ``modules[name]`` calls ``observer(name, module, probs)``.

    The modules then compute their probabilities explicitly (not through fused attention) and
    use them unchanged, so the model's output is the same function. The observers are removed
    on exit, also when the block raises.
    """
    observed = [name for name, module in modules.items() if module.observer is not None]
    if observed:
        raise RuntimeError(f"attention layers {observed} are already observed; captures cannot be nested")
    try:
        for name, module in modules.items():
            module.observer = functools.partial(observer, name)
        yield
    finally:
        for module in modules.values():
            module.observer = None


@dataclass(frozen=True)
class TokenGeometry:
    """Pairwise geometry of the N tokens of one grid, in input pixels.

    Attributes
    ----------
    distance: (N, N) Euclidean distance d(q, k) between token centres, in pixels.
    neighbourhoods: (W, N, N) 1 where key k lies in the w×w token window of query q, else 0.
    distance_bin: (N·N,) index b of the histogram bin [e_b, e_{b+1}) holding d(q, k); distances
        past the last edge count in the last bin.
    bins: number of histogram bins.
    """

    distance: torch.Tensor
    neighbourhoods: torch.Tensor
    distance_bin: torch.Tensor
    bins: int

    @classmethod
    def build(
        cls,
        grid: tuple[int, int],
        pixels_per_token: int,
        windows: Sequence[int],
        bin_edges: Sequence[float],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> "TokenGeometry":
        """The geometry of a row-major (rows, cols) token grid for the given windows and bin edges."""
        rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
        position = torch.stack([rows.flatten(), cols.flatten()], dim=-1).to(torch.float64)
        distance = (position[:, None] - position[None]).square().sum(-1).sqrt() * pixels_per_token
        count = len(position)
        neighbourhoods = torch.zeros(len(windows), count, count, dtype=torch.bool)
        for index, window in enumerate(windows):
            neighbourhoods[index] = window_mask(grid, window)
        edges = torch.as_tensor(bin_edges, dtype=torch.float64)
        distance_bin = torch.bucketize(distance.flatten(), edges[1:-1], right=True)
        return cls(
            distance=distance.to(device, dtype),
            neighbourhoods=neighbourhoods.to(device, dtype),
            distance_bin=distance_bin.to(device),
            bins=len(edges) - 1,
        )


def locality_metrics(probs: torch.Tensor, geometry: TokenGeometry) -> dict[str, torch.Tensor]:
    """The module docstring's metrics of probabilities (B, heads, N, N), each averaged over queries.

    Returns ``mean_distance`` and ``entropy`` of shape (B, heads), ``local_mass`` (B, heads, W)
    and ``distance_histogram`` (B, heads, bins).
    """
    batch, heads, count, _ = probs.shape
    histogram = probs.new_zeros(batch, heads, geometry.bins).index_add_(2, geometry.distance_bin, probs.flatten(2))
    return {
        "mean_distance": torch.einsum("bhqk,qk->bh", probs, geometry.distance) / count,
        "local_mass": torch.einsum("bhqk,wqk->bhw", probs, geometry.neighbourhoods) / count,
        "entropy": torch.special.entr(probs).sum((-2, -1)) / count,
        "distance_histogram": histogram / count,
    }


class LocalityObserver:
    """A :data:`NamedObserver` that reduces each layer's probabilities to :func:`locality_metrics` in the hook.

    Only the reductions outlive the hook, plus — for the layers named in ``map_layers`` — the
    rows ``map_queries`` (all if None) of the head-averaged map, summed over images. Memory
    therefore does not grow with layers × images × N².

    Use: inside :func:`capture_attention`, run one denoiser call, then :meth:`collect` its
    metrics; after the images of one noise level, :meth:`take_maps`.
    """

    def __init__(
        self,
        windows: Sequence[int],
        bin_edges: Sequence[float],
        map_layers: Sequence[str] = (),
        map_queries: Sequence[int] | None = None,
    ) -> None:
        self.windows = tuple(windows)
        self.bin_edges = tuple(bin_edges)
        self.map_layers = set(map_layers)
        self.map_queries = None if map_queries is None else list(map_queries)
        self._geometries: dict[tuple, TokenGeometry] = {}
        self._metrics: dict[str, dict[str, torch.Tensor]] = {}
        self._map_sums: dict[str, torch.Tensor] = {}

    def geometry(self, module: GridAttention, probs: torch.Tensor) -> TokenGeometry:
        """The (cached) geometry of the grid ``module`` attended over in its last forward."""
        key = (module.grid, module.pixels_per_token, probs.device, probs.dtype)
        if key not in self._geometries:
            self._geometries[key] = TokenGeometry.build(
                module.grid, module.pixels_per_token, self.windows, self.bin_edges,
                device=probs.device, dtype=probs.dtype,
            )
        return self._geometries[key]

    @torch.no_grad()
    def __call__(self, name: str, module: GridAttention, probs: torch.Tensor) -> None:
        if name in self._metrics:
            raise RuntimeError(f"attention layer {name} ran twice in one denoiser call; locality needs one call per layer")
        self._metrics[name] = locality_metrics(probs, self.geometry(module, probs))
        if name in self.map_layers:
            rows = probs
            if self.map_queries is not None:
                outside = [q for q in self.map_queries if not 0 <= q < probs.shape[-1]]
                if outside:
                    raise IndexError(f"map queries {outside} are not tokens of layer {name}, which has {probs.shape[-1]}")
                rows = probs[:, :, self.map_queries]
            head_mean = rows.mean(dim=1).sum(dim=0)
            self._map_sums[name] = self._map_sums[name] + head_mean if name in self._map_sums else head_mean

    def collect(self, layers: Sequence[str]) -> dict[str, dict[str, torch.Tensor]]:
        """Metrics of the last denoiser call by layer, on the CPU; each of ``layers`` must have run once."""
        missing = [name for name in layers if name not in self._metrics]
        if missing:
            raise RuntimeError(f"attention layers {missing} did not run in the denoiser call")
        metrics, self._metrics = self._metrics, {}
        return {name: {key: value.cpu() for key, value in layer.items()} for name, layer in metrics.items()}

    def take_maps(self) -> dict[str, torch.Tensor]:
        """Head-averaged maps (queries, N) summed over the images seen since the last call, on the CPU."""
        maps, self._map_sums = self._map_sums, {}
        return {name: value.cpu() for name, value in maps.items()}
