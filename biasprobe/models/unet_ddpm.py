"""The timestep-conditioned UNet of improved DDPM (Nichol & Dhariwal 2021), predicting ε.

Also home to the pieces shared with :mod:`biasprobe.models.dit`: the sinusoidal embedding, the
timestep MLP and the check of (x, t) inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from biasprobe.errors import InputError
from biasprobe.models.attention import GridAttention


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Embedding (N, dim) of N real positions p: [cos(p ω_k), sin(p ω_k)] for k < ⌊dim/2⌋.

    ω_k = max_period^(−k/⌊dim/2⌋). Positions may be fractional; an odd ``dim`` gets a trailing
    zero column.
    """
    if not positions.is_floating_point():
        positions = positions.float()
    half = dim // 2
    k = torch.arange(half, dtype=positions.dtype, device=positions.device)
    frequencies = torch.exp(-math.log(max_period) * k / max(half, 1))
    angles = positions[:, None] * frequencies
    embedding = torch.cat([angles.cos(), angles.sin()], dim=-1)
    return F.pad(embedding, (0, dim - 2 * half))


def conditioned_batch(
    x: torch.Tensor, t: torch.Tensor | float, image_shape: tuple[int, int, int]
) -> torch.Tensor:
    """Check that x has shape (B, *image_shape) and return t as a (B,) tensor of x's dtype and device."""
    if tuple(x.shape[1:]) != image_shape:
        expected = ", ".join(map(str, image_shape))
        raise InputError(f"this network takes images of shape (B, {expected}), got {tuple(x.shape)}")
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.shape not in ((), (x.shape[0],)):
        raise InputError(f"t must be a scalar or have one value per image, got shape {tuple(t.shape)}")
    return t.expand(x.shape[0])


class TimestepEmbedding(nn.Module):
    """t ↦ MLP(sinusoidal_embedding(t)): Linear → SiLU → Linear, from ``frequency_dim`` to ``width``."""

    def __init__(self, frequency_dim: int, width: int) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.frequency_dim))


def _group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with gcd(groups, channels) groups, so that any width works."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class ResidualBlock(nn.Module):
    """skip(x) + conv(dropout(SiLU(GN(h + W SiLU(e))))), h = conv(SiLU(GN(x))).

    e is the timestep embedding and skip a 1×1 conv when the widths differ (else the identity).
    The last conv starts at zero, so the block starts as its skip.
    """

    def __init__(
        self, in_width: int, out_width: int, embedding_width: int, dropout: float, groups: int
    ) -> None:
        super().__init__()
        self.norm1 = _group_norm(in_width, groups)
        self.conv1 = nn.Conv2d(in_width, out_width, 3, padding=1)
        self.time_projection = nn.Linear(embedding_width, out_width)
        self.norm2 = _group_norm(out_width, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_width, out_width, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if in_width == out_width else nn.Conv2d(in_width, out_width, 1)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_projection(F.silu(embedding))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """x + attention(GN(x)), with the pixels of the (h, w) feature map as tokens.

    The output projection starts at zero, so the block starts as the identity.
    """

    def __init__(self, width: int, heads: int, groups: int, pixels_per_token: int) -> None:
        super().__init__()
        self.norm = _group_norm(width, groups)
        self.attention = GridAttention(width, heads, pixels_per_token=pixels_per_token)
        nn.init.zeros_(self.attention.proj.weight)
        nn.init.zeros_(self.attention.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, width, rows, cols = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        out = self.attention(tokens, (rows, cols))
        return x + out.transpose(1, 2).reshape(batch, width, rows, cols)


class Downsample(nn.Conv2d):
    """3×3 convolution with stride 2."""

    def __init__(self, width: int) -> None:
        super().__init__(width, width, 3, stride=2, padding=1)


class Upsample(nn.Module):
    """Nearest-neighbour ×2 upsampling followed by a 3×3 convolution."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class EmbeddingSequential(nn.Sequential):
    """Sequential that also hands the timestep embedding to its residual blocks."""

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, embedding) if isinstance(layer, ResidualBlock) else layer(x)
        return x


class DDPMUNet(nn.Module):
    """ε-prediction UNet in the style of improved DDPM: ``forward(x, t)`` returns ε̂(x_t, t).

    Level ℓ works at resolution ``image_size / 2^ℓ`` with width ``base_width · channel_mult[ℓ]``
    and ``num_res_blocks`` residual blocks, each followed by self-attention when its resolution
    is in ``attention_resolutions``; levels are joined by strided-conv downsampling and
    nearest + conv upsampling; the middle is residual → attention → residual; the decoder has
    ``num_res_blocks + 1`` blocks per level, each taking one encoder skip. The timestep is
    embedded sinusoidally (width ``base_width``), then by an MLP (width ``4 · base_width``).
    As in the paper, the last conv of every residual block, the attention output projections
    and the output conv start at zero.

    Parameters
    ----------
    image_size: side of the square images.
    channels: image channels.
    base_width: width of the first level.
    channel_mult: width multiplier of each level.
    num_res_blocks: residual blocks per encoder level.
    attention_resolutions: feature-map sides at which to attend (e.g. 16 for 16×16).
    heads: attention heads.
    dropout: dropout rate inside residual blocks.
    groups: GroupNorm groups (reduced to gcd(groups, width) for narrow layers).
    learn_sigma: if True the output has 2·channels channels, ε̂ first, then the variance
        interpolation v of improved DDPM.
    """

    family = "unet-ddpm"
    conditioning = "timestep"

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        base_width: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        heads: int = 4,
        dropout: float = 0.0,
        groups: int = 32,
        learn_sigma: bool = False,
    ) -> None:
        super().__init__()
        levels = len(channel_mult)
        if levels == 0 or image_size % 2 ** (levels - 1):
            raise InputError(
                f"image_size {image_size} must be divisible by 2^(len(channel_mult) - 1) "
                f"= {2 ** (levels - 1)}"
            )
        resolutions = [image_size // 2**level for level in range(levels)]
        if not set(attention_resolutions) <= set(resolutions):
            raise InputError(
                f"attention_resolutions {list(attention_resolutions)} must be feature-map sides of this "
                f"UNet, which are {resolutions} at image_size {image_size}"
            )
        self.config = {
            "image_size": image_size,
            "channels": channels,
            "base_width": base_width,
            "channel_mult": list(channel_mult),
            "num_res_blocks": num_res_blocks,
            "attention_resolutions": list(attention_resolutions),
            "heads": heads,
            "dropout": dropout,
            "groups": groups,
            "learn_sigma": learn_sigma,
        }
        self.image_size = image_size
        self.channels = channels
        self.out_channels = 2 * channels if learn_sigma else channels
        embedding_width = 4 * base_width
        self.time_embedding = TimestepEmbedding(base_width, embedding_width)

        def residual(in_width: int, out_width: int) -> ResidualBlock:
            return ResidualBlock(in_width, out_width, embedding_width, dropout, groups)

        def attention(width: int, resolution: int) -> AttentionBlock:
            return AttentionBlock(width, heads, groups, pixels_per_token=image_size // resolution)

        width = base_width
        self.encoder = nn.ModuleList([EmbeddingSequential(nn.Conv2d(channels, width, 3, padding=1))])
        skip_widths = [width]
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [residual(width, base_width * mult)]
                width = base_width * mult
                if resolutions[level] in attention_resolutions:
                    layers.append(attention(width, resolutions[level]))
                self.encoder.append(EmbeddingSequential(*layers))
                skip_widths.append(width)
            if level < levels - 1:
                self.encoder.append(EmbeddingSequential(Downsample(width)))
                skip_widths.append(width)

        self.middle = EmbeddingSequential(
            residual(width, width), attention(width, resolutions[-1]), residual(width, width)
        )

        self.decoder = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for index in range(num_res_blocks + 1):
                layers = [residual(width + skip_widths.pop(), base_width * mult)]
                width = base_width * mult
                if resolutions[level] in attention_resolutions:
                    layers.append(attention(width, resolutions[level]))
                if level > 0 and index == num_res_blocks:
                    layers.append(Upsample(width))
                self.decoder.append(EmbeddingSequential(*layers))

        self.output = nn.Sequential(
            _group_norm(width, groups), nn.SiLU(), nn.Conv2d(width, self.out_channels, 3, padding=1)
        )
        nn.init.zeros_(self.output[-1].weight)
        nn.init.zeros_(self.output[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε̂ (B, out_channels, H, W) for x_t of shape (B, C, H, W) and real timesteps t of shape (B,)."""
        t = conditioned_batch(x, t, (self.channels, self.image_size, self.image_size))
        embedding = self.time_embedding(t)
        skips = []
        for stage in self.encoder:
            x = stage(x, embedding)
            skips.append(x)
        x = self.middle(x, embedding)
        for stage in self.decoder:
            x = stage(torch.cat([x, skips.pop()], dim=1), embedding)
        return self.output(x)
