"""Multi-head self-attention on a 2-D token grid, with optional k×k local windows.

Every attention layer in biasprobe's networks is a :class:`GridAttention`; it and the adapters of
imported networks' layers (diffusers) follow the :class:`ObservableAttention` protocol, so that
analyses find and use them uniformly, in two separate ways:

- *observe*: set ``observer`` (see :func:`biasprobe.analyses.capture.capture_attention`) and every
  forward hands the attention probabilities to it;
- *explicit math*: set ``explicit`` (see :func:`explicit_math`) and the layer computes
  softmax(QKᵀ/√d)V with ordinary differentiable, ``vmap``-able ops instead of a fused kernel
  (fused kernels have neither forward-mode derivatives nor batching rules), observed or not.

Both paths compute the same function.

A window of odd size k restricts query token (i, j) to the keys (i', j') with
``|i - i'| <= k // 2`` and ``|j - j'| <= k // 2``, clipped at the grid border
(An et al., Fig. 5). ``window=None`` is global attention.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

AttentionObserver = Callable[["ObservableAttention", torch.Tensor], None]
"""``observer(layer, probs)`` with ``probs`` of shape (B, heads, N, N)."""


@runtime_checkable
class ObservableAttention(Protocol):
    """An attention layer over a 2-D token grid that analyses can observe and differentiate.

    Attributes
    ----------
    heads: number of heads.
    window: odd k of its k×k local window, or None for global attention.
    grid: (rows, cols) of tokens at the last forward (None before one).
    pixels_per_token: side, in input pixels, of the patch one token stands for.
    observer: None, or a callable that receives every probability map (the *observe* switch).
    explicit: whether the layer runs its explicit softmax path even when not observed.
    """

    heads: int
    window: int | None
    grid: tuple[int, int] | None
    pixels_per_token: int
    observer: AttentionObserver | None
    explicit: bool


@contextlib.contextmanager
def explicit_math(layers: Iterable[ObservableAttention]) -> Iterator[None]:
    """Within the block, ``layers`` compute attention explicitly (differentiable in forward mode and
    batchable by ``vmap``); their previous setting is restored on exit, also after an error."""
    saved = [(layer, layer.explicit) for layer in layers]
    try:
        for layer, _ in saved:
            layer.explicit = True
        yield
    finally:
        for layer, previous in saved:
            layer.explicit = previous


def window_mask(grid: tuple[int, int], window: int | None, device=None) -> torch.Tensor | None:
    """Boolean (N, N) mask, True where query n may attend to key m; None for global attention."""
    if window is None:
        return None
    if window < 1 or window % 2 == 0:
        raise ValueError(f"attention window must be a positive odd integer, got {window}")
    rows, cols = torch.meshgrid(
        torch.arange(grid[0], device=device), torch.arange(grid[1], device=device), indexing="ij"
    )
    rows, cols = rows.flatten(), cols.flatten()
    radius = window // 2
    near_rows = (rows[:, None] - rows[None, :]).abs() <= radius
    near_cols = (cols[:, None] - cols[None, :]).abs() <= radius
    return near_rows & near_cols


class GridAttention(nn.Module):
    """Self-attention over tokens laid out on an (H, W) grid.

    Parameters
    ----------
    dim: token width.
    heads: number of heads; ``dim`` must be divisible by it.
    window: odd k for a k×k neighbourhood around each query, or None for global attention.
    pixels_per_token: side length, in input pixels, of the image patch one token stands for
        (the patch size in a DiT, the downsampling factor in a UNet). Locality metrics use it
        to express distances in pixels.
    bias: whether the qkv and output projections have additive biases.

    When ``observer`` is set or ``explicit`` is True, the forward pass computes the attention
    probabilities explicitly (softmax(QKᵀ/√d) with the window mask), hands them to
    ``observer(module, probs)`` (if set) with ``probs`` of shape (B, heads, N, N), and uses them
    for the output; otherwise it runs the fused ``scaled_dot_product_attention``. Both paths
    compute the same function (:class:`ObservableAttention`).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        window: int | None = None,
        pixels_per_token: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        if window is not None:
            window_mask((1, 1), window)  # validate early
        self.heads = heads
        self.window = window
        self.pixels_per_token = pixels_per_token
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.observer: AttentionObserver | None = None
        self.explicit = False
        self.grid: tuple[int, int] | None = None
        self._mask_cache: dict[tuple, torch.Tensor] = {}

    def mask(self, grid: tuple[int, int], device) -> torch.Tensor | None:
        """The cached boolean window mask for this grid (None for global attention)."""
        if self.window is None:
            return None
        key = (grid, str(device))
        if key not in self._mask_cache:
            self._mask_cache[key] = window_mask(grid, self.window, device)
        return self._mask_cache[key]

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        batch, count, dim = tokens.shape
        if grid[0] * grid[1] != count:
            raise ValueError(f"grid {grid} does not hold {count} tokens")
        self.grid = grid
        q, k, v = (
            self.qkv(tokens).reshape(batch, count, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        )
        mask = self.mask(grid, tokens.device)
        if self.observer is None and not self.explicit:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            probs = scores.softmax(dim=-1)
            if self.observer is not None:
                self.observer(self, probs)
            out = probs @ v
        return self.proj(out.transpose(1, 2).reshape(batch, count, dim))


def attention_modules(model: nn.Module) -> dict[str, GridAttention]:
    """All :class:`GridAttention` layers of ``model`` by qualified name, in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, GridAttention)}
