"""The flat bias-free CNN (``BF_CNN``) of Kadkhodaie et al.'s released code.

A DnCNN-style stack with no additive constant anywhere: convolutions without bias, the
bias-free batch norm of :mod:`biasprobe.models.unet_bf` and ReLU. Like the bias-free UNet it is
homogeneous of degree one in eval mode and returns the residual, x̂ = y − f(y).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from biasprobe.errors import InputError
from biasprobe.models.unet_bf import BiasFreeBatchNorm


class BiasFreeCNN(nn.Module):
    """Bias-free blind CNN: conv → [ReLU] → (conv → bias-free BN → ReLU) × (L − 2) → conv.

    Module names follow the authors' ``BF_CNN`` (LabForComputationalVision/
    memorization_generalization_in_diffusion_models, ``code/network.py``): ``conv_layers.{l}``
    for the L convolutions and ``BN_layers.{l}`` for the L − 2 norms, so their ``model.pt`` state
    dicts load with ``strict=True``. Their ``BF_CNN_RF`` (coarse variant) shares this layout with
    1×1 kernels interleaved, which ``kernel_sizes`` expresses.

    Parameters
    ----------
    channels: image channels, in and out.
    width: channels of the hidden layers (``num_kernels`` in the authors' code).
    kernel_sizes: odd kernel size of each of the L convolutions; padding keeps the image size.
    first_layer_linear: no ReLU after the first convolution (the authors' default, True).
    """

    family = "bf-cnn"
    conditioning = "none"

    def __init__(
        self,
        channels: int = 1,
        width: int = 64,
        kernel_sizes: Sequence[int] = (3,) * 20,
        first_layer_linear: bool = True,
    ) -> None:
        super().__init__()
        kernel_sizes = [int(k) for k in kernel_sizes]
        if len(kernel_sizes) < 2:
            raise InputError(f"a BF_CNN needs at least 2 convolutions, got {len(kernel_sizes)}")
        if any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise InputError(f"kernel sizes must be positive odd integers, got {kernel_sizes}")
        self.config = {
            "channels": channels,
            "width": width,
            "kernel_sizes": kernel_sizes,
            "first_layer_linear": first_layer_linear,
        }
        self.first_layer_linear = first_layer_linear
        widths = [channels] + [width] * (len(kernel_sizes) - 1) + [channels]
        self.conv_layers = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], k, padding=k // 2, bias=False)
            for i, k in enumerate(kernel_sizes)
        )
        self.BN_layers = nn.ModuleList(BiasFreeBatchNorm(width) for _ in kernel_sizes[2:])

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """The residual f(y) ≈ y − x̂ of a noisy batch y of shape (B, C, H, W)."""
        x = self.conv_layers[0](y)
        if not self.first_layer_linear:
            x = torch.relu(x)
        for conv, norm in zip(self.conv_layers[1:-1], self.BN_layers):
            x = torch.relu(norm(conv(x)))
        return self.conv_layers[-1](x)
