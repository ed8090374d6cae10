"""Images in a folder (``folder:PATH``): PNG and JPEG files, sorted by name, centre-cropped to a square
and resized. A folder with ``train/`` and ``test/`` subfolders has those splits; otherwise all its images
are the train split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from biasprobe.data.base import Info, Request, as_images, crop_square, resize
from biasprobe.errors import InputError

SUFFIXES = {".png", ".jpg", ".jpeg"}
GREY_MODES = {"1", "L", "LA"}


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


def read_pixels(path: Path, mode: str | None = None) -> np.ndarray:
    """A file's pixels as (H, W) grey or (H, W, 3) colour uint8: ``mode`` "L" or "RGB", or the file's own."""
    try:
        with Image.open(path) as picture:
            return np.asarray(picture.convert(mode or ("L" if picture.mode in GREY_MODES else "RGB")))
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"cannot read {path} as an image: {err}; remove it from the folder") from None


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
        mode = "L" if self.channels == 1 else "RGB"
        images = [as_images(read_pixels(self.files[i], mode)[None]) for i in indices]
        images = [resize(crop_square(image), self.size) for image in images]
        images = torch.cat(images) if images else torch.empty(0, self.channels, self.size, self.size)
        return images, {"index": indices, "file": np.array([str(self.files[i]) for i in indices], dtype=str)}
