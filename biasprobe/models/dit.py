"""Pixel-space Diffusion Transformer (Peebles & Xie 2023) with optional local attention windows.

The image itself (no autoencoder) is cut into p×p patches, one token each; every block is
conditioned on the timestep by adaLN-Zero. Module names follow the reference DiT code
(``x_embedder``, ``t_embedder``, ``blocks.{i}.attn``, ``adaLN_modulation``, ``final_layer``)
so that its weights map across by name.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from biasprobe.errors import InputError
from biasprobe.models.attention import GridAttention
from biasprobe.models.unet_ddpm import TimestepEmbedding, conditioned_batch, sinusoidal_embedding

TIMESTEP_FREQUENCY_DIM = 256
"""Width of the sinusoidal timestep features fed to the timestep MLP, as in DiT."""


def sincos_position_embedding(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """Fixed 2-D embedding (rows·cols, dim): ⌊dim/2⌋ sinusoidal features of the column, then the row's."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    col_dim = dim // 2
    col_features = sinusoidal_embedding(cols.flatten(), col_dim)
    row_features = sinusoidal_embedding(rows.flatten(), dim - col_dim)
    return torch.cat([col_features, row_features], dim=-1)


def modulate(tokens: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Adaptive layer-norm modulation x ↦ x (1 + scale) + shift."""
    return tokens * (1 + scale) + shift


def _adaptive_layer_norm(width: int) -> nn.LayerNorm:
    return nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)


class PatchEmbedding(nn.Module):
    """Image (B, C, H, W) → tokens (B, H/p · W/p, width) by a p×p convolution of stride p."""

    def __init__(self, channels: int, width: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, width, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning on c.

    x ← x + g₁ · attn(modulate(LN(x), β₁, γ₁)),
    x ← x + g₂ · mlp(modulate(LN(x), β₂, γ₂)),
    with (β₁, γ₁, g₁, β₂, γ₂, g₂) a linear function of SiLU(c) that starts at zero.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float, window: int | None, patch_size: int,
                 qk_norm: bool = False) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1 = _adaptive_layer_norm(width)
        self.attn = GridAttention(width, heads, window=window, pixels_per_token=patch_size, qk_norm=qk_norm)
        self.norm2 = _adaptive_layer_norm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(width, hidden), act=nn.GELU(approximate="tanh"), fc2=nn.Linear(hidden, width)
            )
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(
        self, tokens: torch.Tensor, conditioning: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        shift_attn, scale_attn, gate_attn, shift_mlp, scale_mlp, gate_mlp = (
            self.adaLN_modulation(conditioning)[:, None].chunk(6, dim=-1)
        )
        tokens = tokens + gate_attn * self.attn(modulate(self.norm1(tokens), shift_attn, scale_attn), grid)
        return tokens + gate_mlp * self.mlp(modulate(self.norm2(tokens), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    """Tokens → patch values linear(modulate(LN(x), β, γ)), (β, γ) linear in SiLU(c); all start at zero."""

    def __init__(self, width: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = _adaptive_layer_norm(width)
        self.linear = nn.Linear(width, patch_size**2 * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, tokens: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(conditioning)[:, None].chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(tokens), shift, scale))


class DiT(nn.Module):
    """Diffusion Transformer on pixels: ``forward(x, t)`` returns ε̂ (and the variance output if learned).

    Parameters
    ----------
    image_size: side of the square images; divisible by ``patch_size``.
    channels: image channels.
    patch_size: side p of the pixel patch each token stands for.
    depth: number of transformer blocks.
    width: token width; divisible by ``heads``.
    heads: attention heads.
    mlp_ratio: MLP hidden width / token width.
    windows: one entry per block, None for global attention or an odd k for a k×k window of
        tokens around each query; None makes every block global.
    learn_sigma: if True the output has ``out_channels = 2·channels`` channels, ε̂ first.
    qk_norm: RMS-normalise each head's queries and keys (learned gains) in every block
        (:class:`~biasprobe.models.attention.HeadRMSNorm`); not in the reference DiT, whose config
        leaves it out (a config names it only when set, so older checkpoints keep their identity).

    Initialisation follows DiT: Xavier-uniform linear layers and patch projection, N(0, 0.02²)
    timestep MLP, and zero adaLN modulations and final linear layer — so a fresh model
    outputs exactly zero.
    """

    family = "dit"
    conditioning = "timestep"

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        patch_size: int = 1,
        depth: int = 12,
        width: int = 252,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        windows: Sequence[int | None] | None = None,
        learn_sigma: bool = False,
        qk_norm: bool = False,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise InputError(f"image_size {image_size} is not divisible by patch_size {patch_size}")
        windows = [None] * depth if windows is None else list(windows)
        if len(windows) != depth:
            raise InputError(
                f"windows has {len(windows)} entries but the DiT has depth {depth}; give one per block"
            )
        self.config = {
            "image_size": image_size,
            "channels": channels,
            "patch_size": patch_size,
            "depth": depth,
            "width": width,
            "heads": heads,
            "mlp_ratio": mlp_ratio,
            "windows": windows,
            "learn_sigma": learn_sigma,
            **({"qk_norm": True} if qk_norm else {}),
        }
        self.image_size = image_size
        self.channels = channels
        self.patch_size = patch_size
        self.out_channels = 2 * channels if learn_sigma else channels
        self.grid = (image_size // patch_size, image_size // patch_size)

        self.x_embedder = PatchEmbedding(channels, width, patch_size)
        self.t_embedder = TimestepEmbedding(TIMESTEP_FREQUENCY_DIM, width)
        self.register_buffer("pos_embed", sincos_position_embedding(self.grid, width)[None], persistent=False)
        self.blocks = nn.ModuleList(
            DiTBlock(width, heads, mlp_ratio, window, patch_size, qk_norm=bool(qk_norm)) for window in windows
        )
        self.final_layer = FinalLayer(width, patch_size, self.out_channels)
        self._initialize()

    def _initialize(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        projection = self.x_embedder.proj
        nn.init.xavier_uniform_(projection.weight.view(projection.out_channels, -1))
        nn.init.zeros_(projection.bias)
        for layer in self.t_embedder.mlp[0], self.t_embedder.mlp[2]:
            nn.init.normal_(layer.weight, std=0.02)
        zero_start = [block.adaLN_modulation[-1] for block in self.blocks]
        zero_start += [self.final_layer.adaLN_modulation[-1], self.final_layer.linear]
        for layer in zero_start:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, h·w, p·p·C) → image (B, C, h·p, w·p)."""
        batch, (rows, cols), p = tokens.shape[0], self.grid, self.patch_size
        patches = tokens.reshape(batch, rows, cols, p, p, self.out_channels)
        return patches.permute(0, 5, 1, 3, 2, 4).reshape(batch, self.out_channels, rows * p, cols * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Output (B, out_channels, H, W) for x_t of shape (B, C, H, W) and real timesteps t of shape (B,)."""
        t = conditioned_batch(x, t, (self.channels, self.image_size, self.image_size))
        conditioning = self.t_embedder(t)
        tokens = self.x_embedder(x) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens, conditioning, self.grid)
        return self.unpatchify(self.final_layer(tokens, conditioning))
