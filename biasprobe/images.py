"""Reading images from disk into [0, 1] tensors of the shape a denoiser expects."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from biasprobe.errors import InputError


def read_image(
    path: str | os.PathLike,
    shape: tuple[int, int, int],
    resize: bool = False,
    target: str = "the denoiser",
) -> torch.Tensor:
    """Read a PNG/JPEG, or a (C, H, W) / (H, W) ``.npy`` array, as a (C, H, W) float tensor.

    Pictures are scaled to [0, 1]. Colour is converted to the requested channel count only when
    that loses nothing ambiguous: grey → C copies, and RGB → grey (ITU-R 601 luma). A size other
    than (H, W) is an error unless ``resize`` is set (then bicubic resampling through Pillow).

    ``.npy`` arrays are taken as they are, with any channel count C equal to ``shape[0]`` (so the
    latents of a latent-space model, which are unbounded, as well as pixel images in [0, 1]); they
    are not clamped nor resized. NaN or infinite values are an error. ``target`` names what the
    shape is for in error messages.
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
        if array.ndim != 3:
            raise InputError(f"{path}: a .npy image must be (H, W) or (C, H, W); got shape {array.shape}")
        if array.shape[0] != channels:
            raise InputError(f"{path} has {array.shape[0]} channels; {target} takes {channels}")
        if array.shape[1:] != (height, width):
            raise InputError(f"{path} is {array.shape[1]}×{array.shape[2]}; {target} takes {height}×{width}")
        tensor = torch.from_numpy(array)
        if not torch.isfinite(tensor).all():
            raise InputError(f"{path} contains NaN or infinite values")
        return tensor
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
                    f"{path} is {picture.size[1]}×{picture.size[0]} pixels; {target} takes "
                    f"{height}×{width}: " + "pass {resize} or crop the image",
                    parameters={"resize": "resize=True"},
                )
            picture = picture.resize((width, height), Image.Resampling.BICUBIC)
        array = np.asarray(picture, dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array.reshape(height, width, -1)).permute(2, 0, 1).contiguous()
        if tensor.shape[0] != channels:
            raise InputError(f"{path} has {tensor.shape[0]} channels; {target} takes {channels}")
    return tensor


def write_image(tensor: torch.Tensor, path: str | os.PathLike) -> None:
    """Write a (C, H, W) tensor in [0, 1] as an 8-bit PNG (values clipped; NaN written as 0)."""
    from PIL import Image

    array = (torch.nan_to_num(tensor.detach().cpu(), nan=0.0).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
