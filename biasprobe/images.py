"""Reading images from disk into [0, 1] tensors of the shape a denoiser expects."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from biasprobe.errors import InputError


def read_image(path: str | os.PathLike, shape: tuple[int, int, int], resize: bool = False) -> torch.Tensor:
    """Read a PNG/JPEG (or a (C, H, W) / (H, W) ``.npy`` in [0, 1]) as a (C, H, W) float tensor.

    Colour is converted to the requested channel count only when that loses nothing ambiguous:
    grey → C copies, and RGB → grey (ITU-R 601 luma). A size other than (H, W) is an error unless
    ``resize`` is set (then bicubic resampling through Pillow).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    channels, height, width = shape
    if not path.is_file():
        raise InputError(f"no image at {path}")
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False).astype(np.float32)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or array.shape[0] not in (1, 3):
            raise InputError(f"{path}: a .npy image must be (H, W) or (C, H, W) with C in 1, 3; got {array.shape}")
        if array.shape[0] != channels:
            raise InputError(f"{path} has {array.shape[0]} channels; the denoiser takes {channels}")
        if array.shape[1:] != (height, width):
            raise InputError(f"{path} is {array.shape[1]}×{array.shape[2]}; the denoiser takes {height}×{width}")
        tensor = torch.from_numpy(array)
    else:
        try:
            picture = Image.open(path)
            picture.load()
        except (UnidentifiedImageError, OSError) as err:
            raise InputError(f"cannot read {path} as an image: {err}") from None
        picture = picture.convert("L" if channels == 1 else "RGB")
        if picture.size != (width, height):
            if not resize:
                raise InputError(
                    f"{path} is {picture.size[1]}×{picture.size[0]} pixels; the denoiser takes "
                    f"{height}×{width}: pass --resize or crop the image"
                )
            picture = picture.resize((width, height), Image.Resampling.BICUBIC)
        array = np.asarray(picture, dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array.reshape(height, width, -1)).permute(2, 0, 1).contiguous()
        if tensor.shape[0] != channels:
            raise InputError(f"{path} has {tensor.shape[0]} channels; the denoiser takes {channels}")
    if not torch.isfinite(tensor).all():
        raise InputError(f"{path} contains NaN or infinite values")
    return tensor.clamp(0, 1)


def write_image(tensor: torch.Tensor, path: str | os.PathLike) -> None:
    """Write a (C, H, W) tensor in [0, 1] as an 8-bit PNG."""
    from PIL import Image

    array = (tensor.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
