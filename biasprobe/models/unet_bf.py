"""The bias-free blind UNet of Kadkhodaie, Guth, Simoncelli & Mallat (ICLR 2024).

No layer adds a constant: convolutions and transposed convolutions have no bias, the batch
norm only rescales, and ReLU and pooling are positively homogeneous. In eval mode the network
is therefore homogeneous of degree one, f(a y) = a f(y) for a > 0, hence f(y) = J_f(y) y: it
acts on each image as the adaptive linear filter given by its Jacobian.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from biasprobe.errors import InputError

GAIN_INIT_STD = 2 / (9 * 64)
"""Standard deviation of the initial batch-norm gains, as in Kadkhodaie et al.'s code."""


class BiasFreeBatchNorm(nn.Module):
    """Per-channel rescaling x_c ↦ γ_c x_c / s_c, with no mean subtraction and no shift.

    In training s_c = √(Var[x_c] + ε), the standard deviation over (batch, H, W), and the
    running estimate moves towards it: s ← (1 − m) s + m s_batch. In eval mode s is the
    running estimate, which makes the layer linear. The gain is the parameter ``gammas`` and
    the running estimate the buffer ``running_sd``, both of shape (1, C, 1, 1), as in
    Kadkhodaie et al.'s ``BF_batchNorm``.
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.register_buffer("running_sd", torch.ones(1, channels, 1, 1))
        self.gammas = nn.Parameter(torch.randn(1, channels, 1, 1) * GAIN_INIT_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            # statistics in float32 even under bf16 autocast
            wide = x.to(torch.promote_types(x.dtype, torch.float32))
            sd = (wide.var(dim=(0, 2, 3), keepdim=True, correction=0) + self.eps).sqrt()
            with torch.no_grad():
                self.running_sd.lerp_(sd.to(self.running_sd.dtype), self.momentum)
            return x / sd * self.gammas
        return x * (self.gammas / self.running_sd)  # one pass over x: the layer is linear in eval mode


def _conv(in_width: int, out_width: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(in_width, out_width, kernel_size, padding=kernel_size // 2, bias=False)


def _conv_norm_relu(in_width: int, out_width: int, count: int, kernel_size: int) -> list[nn.Module]:
    """``count`` × (conv → bias-free batch norm → ReLU), the first conv mapping in → out width."""
    layers: list[nn.Module] = []
    for index in range(count):
        layers += [
            _conv(in_width if index == 0 else out_width, out_width, kernel_size),
            BiasFreeBatchNorm(out_width),
            nn.ReLU(),
        ]
    return layers


class BiasFreeUNet(nn.Module):
    """Bias-free blind UNet denoiser: ``forward(y)`` returns the residual, so x̂ = y − f(y).

    Encoder block b (b = 0 … num_blocks − 1) has width ``base_width · 2^b`` and is followed by
    2×2 pooling; the middle block has width ``base_width · 2^num_blocks``; each decoder block
    upsamples with a 2×2 stride-2 transposed conv, concatenates the encoder features of the
    same scale and convolves. The first encoder conv has no batch norm, and the last decoder
    conv maps to ``channels`` with neither norm nor ReLU. Weights are initialised as in the
    authors' training script (Kaiming-normal, fan-in).

    Module and parameter names follow the layout of the authors' released code
    (LabForComputationalVision/memorization_generalization_in_diffusion_models,
    ``code/network.py``): ``encoder.{b}.{i}``, ``mid_block.{i}``, ``upsample.{b}``,
    ``decoder.{b}.{i}``, with batch-norm ``gammas`` and ``running_sd``, so their ``model.pt``
    state dicts (``module.`` prefix stripped) load with ``strict=True``.

    Parameters
    ----------
    channels: image channels (1 for grayscale, 3 for RGB).
    num_blocks: encoder/decoder blocks; images must have sides divisible by 2^num_blocks.
    base_width: channels of the first block; doubles with every block.
    kernel_size: odd convolution kernel size.
    num_enc_conv, num_mid_conv, num_dec_conv: convolutions per encoder, middle and decoder block.
    pooling: ``"avg"`` (as in the released code) or ``"max"``.
    """

    family = "unet-bf"
    conditioning = "none"

    def __init__(
        self,
        channels: int = 1,
        num_blocks: int = 3,
        base_width: int = 64,
        kernel_size: int = 3,
        num_enc_conv: int = 2,
        num_mid_conv: int = 2,
        num_dec_conv: int = 2,
        pooling: Literal["avg", "max"] = "avg",
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise InputError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        if min(num_blocks, num_enc_conv, num_mid_conv, num_dec_conv) < 1:
            raise InputError("num_blocks and the numbers of convolutions per block must be at least 1")
        if pooling not in ("avg", "max"):
            raise InputError(f"pooling must be 'avg' or 'max', got {pooling!r}")
        self.config = {
            "channels": channels,
            "num_blocks": num_blocks,
            "base_width": base_width,
            "kernel_size": kernel_size,
            "num_enc_conv": num_enc_conv,
            "num_mid_conv": num_mid_conv,
            "num_dec_conv": num_dec_conv,
            "pooling": pooling,
        }
        self.out_channels = channels
        self.num_blocks = num_blocks
        width = [base_width * 2**b for b in range(num_blocks + 1)]

        self.encoder = nn.ModuleDict()
        for b in range(num_blocks):
            if b == 0:
                layers = [_conv(channels, width[0], kernel_size), nn.ReLU()]
                layers += _conv_norm_relu(width[0], width[0], num_enc_conv - 1, kernel_size)
            else:
                layers = _conv_norm_relu(width[b - 1], width[b], num_enc_conv, kernel_size)
            self.encoder[str(b)] = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(2) if pooling == "avg" else nn.MaxPool2d(2)
        self.mid_block = nn.Sequential(
            *_conv_norm_relu(width[num_blocks - 1], width[num_blocks], num_mid_conv, kernel_size)
        )

        self.decoder = nn.ModuleDict()
        self.upsample = nn.ModuleDict()
        for b in reversed(range(num_blocks)):
            # The upsampled features (width[b]) are concatenated with the skip (width[b]).
            if b == 0:
                layers = _conv_norm_relu(2 * width[0], width[0], num_dec_conv - 1, kernel_size)
                last_width = width[0] if num_dec_conv > 1 else 2 * width[0]
                layers.append(_conv(last_width, channels, kernel_size))
            else:
                layers = _conv_norm_relu(2 * width[b], width[b], num_dec_conv, kernel_size)
            self.decoder[str(b)] = nn.Sequential(*layers)
            self.upsample[str(b)] = nn.ConvTranspose2d(width[b + 1], width[b], 2, stride=2, bias=False)

        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """The residual f(y) ≈ y − x̂ of a noisy batch y of shape (B, C, H, W)."""
        factor = 2**self.num_blocks
        if y.shape[-2] % factor or y.shape[-1] % factor:
            raise InputError(
                f"image sides {tuple(y.shape[-2:])} must be divisible by 2^num_blocks = {factor}"
            )
        skips = []
        x = y
        for b in range(self.num_blocks):
            x = self.encoder[str(b)](x)
            skips.append(x)
            x = self.pool(x)
        x = self.mid_block(x)
        for b in reversed(range(self.num_blocks)):
            x = self.decoder[str(b)](torch.cat([self.upsample[str(b)](x), skips[b]], dim=1))
        return x
