"""Reading images from disk into [0, 1] tensors of the shape a denoiser expects.

Every Pillow mode is either converted exactly to [0, 1] or refused:

============================  =====================================================
mode                          value in [0, 1]
============================  =====================================================
``1`` (bilevel)               0 or 1
``L``, ``P``, ``RGB``,        v / 255 (``P`` through its palette, ``YCbCr`` to RGB
``YCbCr``                     by the JPEG formula)
``I;16`` (16-bit grey)        v / 65535
``I`` from a PNG (16-bit)     v / 65535
``F`` (float TIFF)            v itself, which must lie in [0, 1]
``LA``, ``PA``, ``RGBA``      as above when every pixel is opaque; else refused
``CMYK``, ``LAB``, ``HSV``,   refused: no exact conversion without a colour profile
``I`` from other files        (or a white level); convert the file first
============================  =====================================================
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from biasprobe.errors import BiasprobeWarning, InputError

MAX_PIXELS = 64 * 2**20
"""Pictures larger than this (64 Mpixel) are refused before decoding: a decompression bomb's guard."""

LUMA = (0.299, 0.587, 0.114)
"""ITU-R 601 luma weights, for colour pictures read by grey models."""


class ColourConversionWarning(BiasprobeWarning):
    """A colour picture was read as grey (ITU-R 601 luma) for a model that takes one channel: the analysis
    runs on the luma, not on the colours of the file."""

_WHITE = {"1": 1, "L": 255, "LA": 255, "RGB": 255, "RGBA": 255, "RGBX": 255, "I;16": 65535, "I;16L": 65535,
          "I;16B": 65535, "I;16N": 65535}


def _open_picture(path: Path):
    """The decoded Pillow image at ``path``, refused when not a picture or larger than :data:`MAX_PIXELS`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            picture = Image.open(path)
            width, height = picture.size
            if width * height > MAX_PIXELS:
                raise InputError(
                    f"{path} is {height}×{width} pixels, more than the {MAX_PIXELS:,} biasprobe decodes "
                    "(a decompression bomb?); crop or shrink it first"
                )
            picture.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path} declares an image too large to decode safely (a decompression bomb?)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"cannot read {path} as an image: {reason}") from None
    return picture


def picture_values(path: str | os.PathLike) -> np.ndarray:
    """The pixels of a picture file as an (H, W, C) float64 array in [0, 1], C = 1 (grey) or 3 (colour).

    See the module's table for how each Pillow mode maps to [0, 1]."""
    path = Path(path)
    picture = _open_picture(path)
    mode = picture.mode
    if mode == "P" or mode == "PA":
        picture = picture.convert("RGBA")
    elif mode == "YCbCr":
        picture = picture.convert("RGB")
    mode = picture.mode
    if mode == "I" and picture.format == "PNG":  # Pillow reads 16-bit PNGs as 32-bit "I"
        white = 65535
    elif mode == "F":
        white = 1
    else:
        white = _WHITE.get(mode)
    if white is None:
        hint = "a 32-bit integer image has no fixed white level" if mode.startswith("I") else "no exact conversion"
        raise InputError(f"{path} has the {mode} image mode ({hint}); convert it to 8- or 16-bit grey or RGB, "
                         "or to a float image in [0, 1]")
    array = np.asarray(picture).astype(np.float64)
    array = array.reshape(*array.shape[:2], -1)
    if mode in ("LA", "RGBA"):
        if (array[..., -1] < white).any():
            raise InputError(f"{path} has transparent pixels; flatten it onto a background first")
        array = array[..., :-1]
    elif mode == "RGBX":
        array = array[..., :3]
    if mode == "F" and (not np.isfinite(array).all() or array.min() < 0 or array.max() > 1):
        raise InputError(f"{path} is a float image with values outside [0, 1] (or NaN); rescale it to [0, 1]")
    if mode == "I" and (array.min() < 0 or array.max() > white):
        raise InputError(f"{path} has values outside the 16-bit range; rescale it to 16 bits")
    return array / white


def with_channels(array: np.ndarray, channels: int, message: str = "{} channels cannot be converted") -> np.ndarray:
    """An (H, W, C) picture with ``channels`` channels: grey → copies, RGB → grey by ITU-R 601 luma;
    any other change is refused (``message`` formatted with C)."""
    if array.shape[-1] == channels:
        return array
    if array.shape[-1] == 1 and channels == 3:
        return np.repeat(array, 3, axis=-1)
    if array.shape[-1] == 3 and channels == 1:
        return array @ np.asarray(LUMA)[:, None]
    raise InputError(message.format(array.shape[-1]))


def _resized(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resampling of each channel in float (Pillow's "F" mode), clipped to [0, 1]."""
    from PIL import Image

    planes = [np.asarray(Image.fromarray(array[..., c].astype(np.float32), mode="F")
                         .resize((width, height), Image.Resampling.BICUBIC)) for c in range(array.shape[-1])]
    return np.clip(np.stack(planes, axis=-1).astype(np.float64), 0, 1)


def read_array(path: str | os.PathLike) -> np.ndarray:
    """A ``.npy`` file's array, refused unless it is a plain, non-empty, real floating-point array.

    Read with ``allow_pickle=False`` (no code from the file runs) and memory-mapped, so that the
    header is checked before the data are read."""
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as err:
        if "pickle" in str(err) or "object" in str(err):
            raise InputError(f"{path} holds Python objects, which biasprobe does not unpickle; save a float "
                             "array") from None
        raise InputError(f"{path} is not a readable .npy file: {err}") from None
    except (OSError, EOFError):
        raise InputError(f"{path} is not a readable .npy file (empty or truncated)") from None
    if not isinstance(array, np.ndarray):
        raise InputError(f"{path} holds no single array (an .npz archive?); save one array with numpy.save")
    if array.dtype.kind != "f" or array.dtype.fields is not None:
        kind = {"c": "complex", "i": "integer", "u": "integer", "b": "boolean", "U": "text", "S": "bytes",
                "V": "structured", "M": "date", "m": "time-delta", "O": "object"}.get(array.dtype.kind, "non-float")
        raise InputError(f"{path} is a {kind} array ({array.dtype}); images must be real floats (pixels in [0, 1])")
    if array.size == 0:
        raise InputError(f"{path} is an empty array of shape {array.shape}")
    return np.array(array, dtype=np.float32)  # a copy: the memory map is read-only


def read_image(
    path: str | os.PathLike,
    shape: tuple[int, int, int],
    resize: bool = False,
    target: str = "the denoiser",
) -> torch.Tensor:
    """Read a picture (PNG, JPEG, TIFF, ...), or a (C, H, W) / (H, W) ``.npy`` array, as a (C, H, W) float tensor.

    Pictures are scaled to [0, 1] exactly (see the module's table). Colour is converted to the
    requested channel count only when that loses nothing ambiguous: grey → C copies, and RGB →
    grey (ITU-R 601 luma), said by a :class:`ColourConversionWarning` where the picture has colour. A size other than (H, W) is an error unless ``resize`` is set (then
    bicubic resampling in floating point, clipped to [0, 1]).

    ``.npy`` arrays (real floats only, see :func:`read_array`) are taken as they are, with any
    channel count C equal to ``shape[0]`` (so the latents of a latent-space model, which are
    unbounded, as well as pixel images in [0, 1]); they are not clamped nor resized. NaN or
    infinite values are an error. ``target`` names what the shape is for in error messages.
    """
    path = Path(path)
    channels, height, width = shape
    if not path.is_file():
        raise InputError(f"no image at {path}" if not path.exists() else f"{path} is not a regular file")
    if path.suffix.lower() == ".npy":
        array = read_array(path)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise InputError(f"{path}: a .npy image must be (H, W) or (C, H, W); got shape {array.shape}")
        if array.shape[0] != channels:
            raise InputError(f"{path} has {array.shape[0]} channels; {target} takes {channels}")
        if array.shape[1:] != (height, width):
            raise InputError(f"{path} is {array.shape[1]}×{array.shape[2]}; {target} takes {height}×{width}")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if not torch.isfinite(tensor).all():
            raise InputError(f"{path} contains NaN or infinite values")
        return tensor
    array = picture_values(path)
    if array.shape[-1] == 3 and channels == 1 and np.ptp(array, axis=-1).any():  # grey saved as RGB loses nothing
        warnings.warn(ColourConversionWarning(f"{path} is a colour picture; {target} takes grey images: "
                                              "converted to grey (ITU-R 601 luma)"), stacklevel=2)
    array = with_channels(array, channels, f"{path} has {{}} channels; {target} takes {channels}")
    if array.shape[:2] != (height, width):
        if not resize:
            raise InputError(
                f"{path} is {array.shape[0]}×{array.shape[1]} pixels; {target} takes "
                f"{height}×{width}: " + "pass {resize} or crop the image",
                parameters={"resize": "resize=True"},
            )
        array = _resized(array, height, width)
    return torch.from_numpy(array.astype(np.float32)).permute(2, 0, 1).contiguous()


def write_image(tensor: torch.Tensor, path: str | os.PathLike) -> None:
    """Write a (C, H, W) tensor in [0, 1] as an 8-bit PNG (values clipped; NaN written as 0)."""
    from PIL import Image

    array = (torch.nan_to_num(tensor.detach().cpu(), nan=0.0).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
