"""Multi-head self-attention on a 2-D token grid, with optional k×k local windows.

Every attention layer in biasprobe's networks is a :class:`GridAttention`; it and the adapters of
imported networks' layers (diffusers) follow the :class:`ObservableAttention` protocol, so that
analyses find and use them uniformly, in two separate ways:

- *observe*: set ``observer`` (see :func:`biasprobe.analyses.capture.capture_attention`) and every
  forward hands the attention probabilities to it;
- *explicit math*: set ``explicit`` (see :func:`explicit_math`) and the layer computes
  softmax(QKᵀ/√d)V with ordinary differentiable, ``vmap``-able ops instead of a fused kernel
  (fused kernels have neither forward-mode derivatives nor batching rules), observed or not.

Both paths compute the same function. Attention state is switched in one place, as captum sets and
removes its hooks: :func:`attention_switched` sets the layers' settings (``observer``, ``explicit``,
``kernel``, ``block_size``) and restores the previous ones in one ``try/finally``; the capture, the
explicit math, the training's mask building and its stacked step all go through it, and
:func:`set_attention_kernel`, the one lasting setting, through the same checks.

A window of odd size k restricts query token (i, j) to the keys (i', j') with
``|i - i'| <= k // 2`` and ``|j - j'| <= k // 2``, clipped at the grid border
(An et al., Fig. 5). ``window=None`` is global attention.

Unobserved and not explicit, the layer runs one of three *kernels* for the same function
softmax(QKᵀ/√d + M) V, with M = 0 inside the window and −∞ outside (:data:`ATTENTION_KERNELS`):

- ``"sdpa"``: :func:`torch.nn.functional.scaled_dot_product_attention`. Its fused kernels
  (flash, memory-efficient) need a head dimension d that is a multiple of 8; any other d is
  zero-padded to the next multiple, which is exact: padding adds 0 to every q·k, the scale
  stays 1/√d, and the padded value columns give output columns that are cut off again.
- ``"flex"``: :func:`torch.nn.attention.flex_attention.flex_attention` with a block mask built
  from the k×k window, so that key blocks no query of a block can see are skipped: the cost
  falls with the window. Compiled on CUDA; on the CPU the unfused reference implementation.
- ``"auto"`` (default): ``flex`` for windowed layers on CUDA, ``sdpa`` otherwise.
"""

from __future__ import annotations

import contextlib
import functools
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


ATTENTION_SETTINGS = ("observer", "explicit", "kernel", "block_size", "fused_output")
"""The switchable state of an attention layer (``kernel``, ``block_size`` and ``fused_output``:
:class:`GridAttention` only)."""


@contextlib.contextmanager
def attention_switched(layers: Iterable[ObservableAttention], **settings) -> Iterator[None]:
    """Within the block, each of ``layers`` runs with ``settings`` (names from :data:`ATTENTION_SETTINGS`);
    their previous values are restored on exit, also after an error.

    A setting's value applies to every layer, or, given as a dict keyed by layer, to each its own
    (the capture's observers, which know their layer's name)."""
    layers = list(layers)
    settings = _checked_settings(settings)
    saved = [(layer, {name: getattr(layer, name) for name in settings}) for layer in layers]
    try:
        for layer in layers:
            _apply(layer, {name: value[layer] if isinstance(value, dict) else value
                           for name, value in settings.items()})
        yield
    finally:
        for layer, previous in saved:
            _apply(layer, previous)


def explicit_math(layers: Iterable[ObservableAttention]):
    """Within the block, ``layers`` compute attention explicitly (differentiable in forward mode and
    batchable by ``vmap``): :func:`attention_switched` with ``explicit=True``."""
    return attention_switched(layers, explicit=True)


def _checked_settings(settings: dict) -> dict:
    """``settings`` if every name is one of :data:`ATTENTION_SETTINGS` and every kernel and block size is known."""
    unknown = sorted(set(settings) - set(ATTENTION_SETTINGS))
    if unknown:
        raise ValueError(f"unknown attention settings {unknown}; use {', '.join(ATTENTION_SETTINGS)}")
    if "kernel" in settings and settings["kernel"] not in ATTENTION_KERNELS:
        raise ValueError(f"unknown attention kernel {settings['kernel']!r}; use one of {', '.join(ATTENTION_KERNELS)}")
    if "block_size" in settings and settings["block_size"] not in FLEX_BLOCK_SIZES:
        raise ValueError(f"FlexAttention block size {settings['block_size']!r} is not one of {FLEX_BLOCK_SIZES}")
    return settings


def _apply(layer: ObservableAttention, values: dict) -> None:
    for name, value in values.items():
        setattr(layer, name, value)


ATTENTION_KERNELS = ("auto", "sdpa", "flex")
"""Kernels of the unobserved forward pass; all compute the same function."""

FLEX_BLOCK_SIZE = 128
"""Default query and key block size of FlexAttention's block mask: the granularity at which key
blocks are skipped (see :func:`set_attention_kernel` for smaller ones)."""

FLEX_BLOCK_SIZES = (128, 64, 32, 16)
"""Block sizes a layer's FlexAttention block mask may take. The function is the same for all; a
smaller block skips more of the keys outside a window (a block of B queries on a grid of C columns
spans about B/C rows, and reaches the keys of about B/C + k − 1 rows), but runs smaller, less
efficient tiles. On CUDA the compiled kernels need tiles that divide the block: in the default
compile mode torch's tiles for H100-class cards allow 64 in the backward only for head dims below 64;
the ``max-autotune`` modes search smaller tiles (tests/benchmarks/bench_training.py measures which
sizes run)."""


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


def _window_mask_mod(grid: tuple[int, int], window: int, device=None):
    """FlexAttention's mask_mod for a k×k window: the predicate of :func:`window_mask`.

    The radius is held as a tensor, not a Python int: torch.compile guards on the ints a mask_mod closes
    over, so windows 3, 5, …, 13 in one network (and the gap measurement's eager calls of the compiled
    kernel) each compiled the kernel anew until dynamo's recompile limit (8) sent every further call to the
    unfused fallback, which materialises the scores (zoo v2 round 1, docs/zoo.md). A tensor is an input of
    the compiled kernel: every window shares one compilation."""
    cols, radius = grid[1], torch.tensor(window // 2, device=device)

    def inside(batch, head, query, key):
        near_rows = (query // cols - key // cols).abs() <= radius
        near_cols = (query % cols - key % cols).abs() <= radius
        return near_rows & near_cols

    return inside


def window_block_mask(grid: tuple[int, int], window: int, device=None, block_size: int = FLEX_BLOCK_SIZE):
    """FlexAttention ``BlockMask`` of a k×k window on ``grid`` (key blocks outside it are skipped)."""
    from torch.nn.attention.flex_attention import create_block_mask

    window_mask((1, 1), window)  # validate
    count = grid[0] * grid[1]
    return create_block_mask(_window_mask_mod(grid, window, device), None, None, count, count, device=device,
                             BLOCK_SIZE=block_size)


@functools.cache
def _compiled_flex_attention():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _pad_head_dim(tensors: tuple[torch.Tensor, ...], multiple: int = 8) -> tuple[torch.Tensor, ...]:
    """Zero-pad the last dimension up to a multiple of ``multiple`` (exact for attention; see module doc)."""
    pad = -tensors[0].shape[-1] % multiple
    return tensors if pad == 0 else tuple(F.pad(t, (0, pad)) for t in tensors)


def flex_kernel_options(block_size: int) -> dict | None:
    """FlexAttention ``kernel_options`` for a block mask of ``block_size`` on CUDA: kernel tiles no
    larger than the mask's blocks (their size must divide it); None (the kernel's own choice) for
    the default size."""
    if block_size >= FLEX_BLOCK_SIZE:
        return None
    return {"BLOCK_M": block_size, "BLOCK_N": block_size, "bwd_BLOCK_M1": block_size, "bwd_BLOCK_N1": block_size,
            "bwd_BLOCK_M2": block_size, "bwd_BLOCK_N2": block_size}


def fused_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, block_mask=None
) -> torch.Tensor:
    """softmax(QKᵀ/√d + M) V for (B, heads, N, d) inputs without materialising the probabilities.

    ``mask`` is the boolean window mask (None: global); with a FlexAttention ``block_mask`` the
    flex kernel runs instead. Head dims are zero-padded to a multiple of 8 (exact).
    """
    dim = q.shape[-1]
    padded = _pad_head_dim((q, k, v))
    if block_mask is not None:
        from torch.nn.attention.flex_attention import flex_attention

        kernel, options = flex_attention, None
        if q.is_cuda:
            options = flex_kernel_options(block_mask.BLOCK_SIZE[0])
            if not torch.compiler.is_compiling():  # eager CUDA needs the compiled kernel; a compiled network lowers it
                kernel = _compiled_flex_attention()
        out = kernel(*padded, block_mask=block_mask, scale=dim**-0.5, kernel_options=options)
    else:
        out = F.scaled_dot_product_attention(*padded, attn_mask=mask, scale=dim**-0.5)
    return out[..., :dim]


class HeadRMSNorm(nn.Module):
    """x ↦ g ⊙ x / √(mean(x²) + ε) over the last axis (one head's channels), g learned, starting at 1; computed in
    float32 and returned in x's dtype, so that under bf16 autocast q and k reach the attention kernel in the dtype
    of v (FlexAttention needs one dtype for all three)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.float()
        return (wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()).to(x.dtype)


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
    qk_norm: normalise each head's queries and keys before their product (:class:`HeadRMSNorm`, a learned gain
        per channel; Dehghani et al. 2023, Wortsman et al. 2023): the logits q̂·k̂/√d stay bounded by the gains,
        which keeps attention from collapsing onto single keys (zoo v2's local DiTs, docs/zoo.md).

    When ``observer`` is set or ``explicit`` is True, the forward pass computes the attention
    probabilities explicitly (softmax(QKᵀ/√d) with the window mask), hands them to
    ``observer(module, probs)`` (if set) with ``probs`` of shape (B, heads, N, N), and uses them
    for the output — unless ``fused_output`` is True and ``explicit`` False: then an observed layer computes
    its output by :func:`fused_attention` and the probabilities beside it, for the observer alone (the same
    function to float rounding; which is faster depends on the device: docs/benchmarks.md); otherwise it
    runs :func:`fused_attention` with the kernel ``self.kernel``
    (one of :data:`ATTENTION_KERNELS`; see :func:`set_attention_kernel`). All paths compute the
    same function (:class:`ObservableAttention`).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        window: int | None = None,
        pixels_per_token: int = 1,
        bias: bool = True,
        qk_norm: bool = False,
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
        self.q_norm = HeadRMSNorm(dim // heads) if qk_norm else None
        self.k_norm = HeadRMSNorm(dim // heads) if qk_norm else None
        self.observer: AttentionObserver | None = None
        self.explicit = False
        self.fused_output = False
        self.kernel = "auto"
        self.block_size = FLEX_BLOCK_SIZE
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

    def block_mask(self, grid: tuple[int, int], device):
        """The cached FlexAttention block mask of the window, or None if the flex kernel does not apply."""
        kernel = self.kernel
        if kernel == "auto":
            kernel = "flex" if self.window is not None and torch.device(device).type == "cuda" else "sdpa"
        if kernel != "flex" or self.window is None:
            return None
        key = ("flex", grid, str(device), self.block_size)
        if key not in self._mask_cache:
            self._mask_cache[key] = window_block_mask(grid, self.window, device, self.block_size)
        return self._mask_cache[key]

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        batch, count, dim = tokens.shape
        if grid[0] * grid[1] != count:
            raise ValueError(f"grid {grid} does not hold {count} tokens")
        self.grid = grid
        q, k, v = (
            self.qkv(tokens).reshape(batch, count, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        )
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        mask = self.mask(grid, tokens.device)
        fused = not self.explicit and (self.observer is None or self.fused_output)
        if fused:
            out = fused_attention(q, k, v, mask, self.block_mask(grid, tokens.device))
        if self.observer is not None or not fused:
            scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            probs = scores.softmax(dim=-1)
            if self.observer is not None:
                self.observer(self, probs)
            if not fused:
                out = probs @ v
        return self.proj(out.transpose(1, 2).reshape(batch, count, dim))


def attention_modules(model: nn.Module) -> dict[str, GridAttention]:
    """All :class:`GridAttention` layers of ``model`` by qualified name, in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, GridAttention)}


def set_attention_kernel(model: nn.Module, kernel: str, block_size: int | None = None) -> None:
    """Make every :class:`GridAttention` of ``model`` run ``kernel`` (one of :data:`ATTENTION_KERNELS`),
    and, if given, build its FlexAttention block masks with ``block_size`` (one of
    :data:`FLEX_BLOCK_SIZES`; the same function at every size)."""
    settings = _checked_settings({"kernel": kernel} if block_size is None else
                                 {"kernel": kernel, "block_size": block_size})
    for module in attention_modules(model).values():
        _apply(module, settings)
