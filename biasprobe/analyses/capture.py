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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from biasprobe.models.attention import GridAttention, ObservableAttention, attention_switched

NamedObserver = Callable[[str, ObservableAttention, torch.Tensor], None]
"""``observer(name, module, probs)`` with ``probs`` of shape (B, heads, N, N)."""


@contextlib.contextmanager
def capture_attention(modules: Mapping[str, ObservableAttention], observer: NamedObserver, *,
                      fused_output: bool = False) -> Iterator[None]:
    """Within the block, every forward of ``modules[name]`` calls ``observer(name, module, probs)``
    (the *observe* context of :class:`~biasprobe.models.attention.ObservableAttention`).

    The modules then compute their probabilities explicitly (not through fused attention) and
    use them unchanged, so the model's output is the same function; with ``fused_output`` the
    :class:`~biasprobe.models.attention.GridAttention` layers compute their output by fused attention and the
    probabilities beside it for the observer (the same function to float rounding; other layers as before).
    The observers are removed on exit, also when the block raises.
    """
    observed = [name for name, module in modules.items() if module.observer is not None]
    if observed:
        raise RuntimeError(f"attention layers {observed} are already observed; captures cannot be nested")
    observers = {module: functools.partial(observer, name) for name, module in modules.items()}
    grid_layers = [module for module in modules.values() if isinstance(module, GridAttention)]
    with attention_switched(modules.values(), observer=observers), \
            attention_switched(grid_layers, fused_output=fused_output):
        yield


@dataclass(frozen=True)
class TokenGeometry:
    """Pairwise geometry of the N tokens of one grid, through their relative offsets δ = pos_k − pos_q.

    Distance, neighbourhood and histogram bin depend on a (query, key) pair only through δ, so
    the linear metrics need only the attention mass per offset, A(δ) = (1/N) Σ_q p(q, q + δ):
    d̄ = Σ_δ A(δ) s‖δ‖₂, m_w = Σ_{‖δ‖_∞ ≤ ⌊w/2⌋} A(δ), h_b = Σ_{s‖δ‖₂ ∈ bin b} A(δ).

    Attributes
    ----------
    offset_index: (N·N,) index of the offset of each (query, key) pair, row-major over queries then
        keys, among the (2h − 1)(2w − 1) offsets of an (h, w) grid.
    offset_distance: (offsets,) Euclidean length s‖δ‖₂ of each offset, in pixels.
    offset_neighbourhoods: (offsets, W) 1 where the offset lies in the w×w token window, else 0.
    offset_bin: (offsets,) histogram bin b, [e_b, e_{b+1}), of each offset's length; lengths past
        the last edge count in the last bin.
    bins: number of histogram bins.
    """

    offset_index: torch.Tensor
    offset_distance: torch.Tensor
    offset_neighbourhoods: torch.Tensor
    offset_bin: torch.Tensor
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
    ) -> TokenGeometry:
        """The geometry of a row-major (rows, cols) token grid for odd windows w and bin edges in pixels."""
        rows, cols = grid
        row, col = (
            index.flatten() for index in torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        )
        offset_index = (
            (row[None] - row[:, None] + rows - 1) * (2 * cols - 1) + col[None] - col[:, None] + cols - 1
        )
        d_row, d_col = (
            index.flatten()
            for index in torch.meshgrid(
                torch.arange(1 - rows, rows), torch.arange(1 - cols, cols), indexing="ij"
            )
        )
        distance = torch.hypot(d_row.double(), d_col.double()) * pixels_per_token
        chebyshev = torch.maximum(d_row.abs(), d_col.abs())
        neighbourhoods = chebyshev[:, None] <= torch.tensor(
            [window // 2 for window in windows], dtype=torch.long
        )
        edges = torch.as_tensor(bin_edges, dtype=torch.float64)
        return cls(
            offset_index=offset_index.flatten().to(device),
            offset_distance=distance.to(device, dtype),
            offset_neighbourhoods=neighbourhoods.to(device, dtype),
            offset_bin=torch.bucketize(distance, edges[1:-1], right=True).to(device),
            bins=len(edges) - 1,
        )


def locality_metrics(probs: torch.Tensor, geometry: TokenGeometry) -> dict[str, torch.Tensor]:
    """The module docstring's metrics of probabilities (B, heads, N, N), each averaged over queries.

    Returns ``mean_distance`` and ``entropy`` of shape (B, heads), ``local_mass`` (B, heads, W)
    and ``distance_histogram`` (B, heads, bins). One pass over the N² probabilities gathers the
    mass per offset (see :class:`TokenGeometry`); another takes the entropy, one head at a time
    so that its temporary holds a single head's map.
    """
    batch, heads, count, _ = probs.shape
    offsets = len(geometry.offset_distance)
    by_offset = (
        probs.new_zeros(batch, heads, offsets).index_add_(2, geometry.offset_index, probs.flatten(2)) / count
    )
    return {
        "mean_distance": by_offset @ geometry.offset_distance,
        "local_mass": by_offset @ geometry.offset_neighbourhoods,
        "entropy": torch.stack([torch.special.entr(head).sum((-2, -1)) for head in probs.unbind(1)], 1)
        / count,
        "distance_histogram": by_offset.new_zeros(batch, heads, geometry.bins).index_add_(
            2, geometry.offset_bin, by_offset
        ),
    }


class LocalityObserver:
    """A :data:`NamedObserver` reducing each layer's probabilities to :func:`locality_metrics` in the hook.

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

    def geometry(self, module: ObservableAttention, probs: torch.Tensor) -> TokenGeometry:
        """The (cached) geometry of the grid ``module`` attended over in its last forward."""
        key = (module.grid, module.pixels_per_token, probs.device, probs.dtype)
        if key not in self._geometries:
            self._geometries[key] = TokenGeometry.build(
                module.grid,
                module.pixels_per_token,
                self.windows,
                self.bin_edges,
                device=probs.device,
                dtype=probs.dtype,
            )
        return self._geometries[key]

    @torch.no_grad()
    def __call__(self, name: str, module: ObservableAttention, probs: torch.Tensor) -> None:
        if name in self._metrics:
            raise RuntimeError(
                f"attention layer {name} ran twice in one denoiser call; locality needs one call per layer"
            )
        self._metrics[name] = locality_metrics(probs, self.geometry(module, probs))
        if name in self.map_layers:
            rows = probs
            if self.map_queries is not None:
                outside = [q for q in self.map_queries if not 0 <= q < probs.shape[-1]]
                if outside:
                    raise IndexError(
                        f"map queries {outside} are not tokens of layer {name}, which has {probs.shape[-1]}"
                    )
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
