"""What every data source provides, and the image transforms they share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

Info = dict[str, np.ndarray]
"""Provenance of each returned image: columns of equal length, one row per image."""

LUMA = torch.tensor([0.299, 0.587, 0.114])
"""ITU-R 601 luma weights, as Pillow's ``convert("L")`` and :func:`biasprobe.images.read_image` use."""


@dataclass(frozen=True)
class Request:
    """What ``load`` asks a source for; each source reads the fields it needs."""

    split: str
    size: int
    seed: int
    data_dir: Path | None
    argument: str | None
    """The part of the name after ``:`` (a path for ``folder:``/``npz:``, α for ``c-alpha:``)."""


class Images(Protocol):
    """One split of a data set: ``take`` returns (N, C, size, size) float32 images in [0, 1] and their
    provenance. Finite sets also have ``__len__``; infinite families draw image ``i`` from
    ``(seed, split, i)``."""

    def take(self, indices: np.ndarray) -> tuple[torch.Tensor, Info]: ...


def crop_square(images: torch.Tensor) -> torch.Tensor:
    """The centred square of side min(H, W)."""
    height, width = images.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return images[..., top : top + side, left : left + side]


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square (N, C, H, H) images resampled to (N, C, size, size): antialiased bicubic, clamped to [0, 1]."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    resized = F.interpolate(images, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return resized.clamp_(0, 1)


def to_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """Grey → 3 copies, colour → grey by luma (``channels`` 1 or 3); ``None`` keeps the source's."""
    if channels is None or channels == images.shape[1]:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    return torch.einsum("nchw,c->nhw", images, LUMA.to(images.dtype)).unsqueeze(1)


def as_images(array: np.ndarray) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) uint8 (0 to 255) or float (0 to 1) → (N, C, H, W) float32 in [0, 1]."""
    tensor = torch.tensor(array, dtype=torch.float32)
    if array.dtype == np.uint8:
        tensor /= 255
    return tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2).contiguous()
