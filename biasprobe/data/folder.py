"""Images in a folder (``folder:PATH``): PNG and JPEG files, sorted by name, centre-cropped to a square
and resized. A folder with ``train/`` and ``test/`` subfolders has those splits; otherwise all its images
are the train split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from biasprobe.data.base import Info, Request, as_images, crop_square, resize
from biasprobe.errors import InputError
from biasprobe.images import picture_values, with_channels

SUFFIXES = {".png", ".jpg", ".jpeg"}


def split_directory(root: Path, split: str) -> Path:
    """``root/split`` when ``root`` has train/test subfolders, else ``root`` itself for the train split."""
    if not root.is_dir():
        raise InputError(f"no folder at {root}: pass folder:PATH with an existing folder of PNG/JPEG images")
    if (root / "train").is_dir():
        directory = root / split
        if not directory.is_dir():
            raise InputError(f"{root} has train/ but no {split}/ subfolder: add it or use split='train'")
        return directory
    if split != "train":
        raise InputError(f"{root} has no {split}/ subfolder: put {split} images there or use split='train'")
    return root


def read_pixels(path: Path, channels: int | None = None) -> np.ndarray:
    """A file's pixels in [0, 1] as (H, W) grey or (H, W, 3) colour: ``channels`` 1 or 3, or the file's own."""
    try:
        array = picture_values(path)
        if channels is not None:
            array = with_channels(array, channels)
    except InputError as err:
        raise InputError(f"{err}; remove it from the folder") from None
    return array[..., 0] if array.shape[-1] == 1 else array


class Folder:
    """The sorted image files of one split, read on request in the mode of the first (grey or colour)."""

    def __init__(self, request: Request) -> None:
        directory = split_directory(Path(request.argument or "").expanduser(), request.split)
        self.files = sorted(path for path in directory.iterdir() if path.suffix.lower() in SUFFIXES)
        if not self.files:
            raise InputError(f"no PNG or JPEG files in {directory}")
        self.channels = 1 if read_pixels(self.files[0]).ndim == 2 else 3
        self.size = request.size

    def __len__(self) -> int:
        return len(self.files)

    def take(self, indices: np.ndarray) -> tuple[torch.Tensor, Info]:
        images = [as_images(read_pixels(self.files[i], self.channels)[None]) for i in indices]
        images = [resize(crop_square(image), self.size) for image in images]
        images = torch.cat(images) if images else torch.empty(0, self.channels, self.size, self.size)
        return images, {"index": indices, "file": np.array([str(self.files[i]) for i in indices], dtype=str)}
