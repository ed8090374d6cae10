"""Grey patches of the photographs bundled with scikit-image (nothing is downloaded).

Train and test patches come from different photographs, so no test patch shares a pixel with a training
patch. Each photo is also block-averaged by 2 and 4, so patches hold structure at patch scale, and cut on
a grid of stride size/2 whose offset is drawn from a fixed seed: the patch pool is the same for every call.
"""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from biasprobe.data.base import Info, Request, as_images
from biasprobe.errors import InputError

PHOTOS = {
    "train": (
        "camera.png", "astronaut.png", "coffee.png", "rocket.jpg", "moon.png",
        "brick.png", "grass.png", "motorcycle_left.png", "ihc.png",
    ),
    "test": ("chelsea.png", "coins.png", "gravel.png"),
}
"""The fixed assignment of photographs to splits: files shipped inside the ``skimage.data`` package."""

SCALES = (1, 2, 4)
GRID_SEED = 20240521


@cache
def load_photo(name: str, scale: int = 1) -> torch.Tensor:
    """The named photograph as a (1, 1, H, W) grey tensor in [0, 1], block-averaged by ``scale``.

    Read straight from the files inside the installed ``skimage.data`` package, so nothing is ever downloaded.
    """
    if scale > 1:
        return F.avg_pool2d(load_photo(name), scale)
    import skimage.data
    from PIL import Image

    path = Path(skimage.data.__file__).parent / name
    if not path.is_file():
        raise InputError(f"{path} is missing: reinstall scikit-image (>= 0.22 ships the photos)")
    with Image.open(path) as picture:
        return as_images(np.asarray(picture.convert("L"))[None])


def parse_scales(argument: str | None) -> tuple[int, ...]:
    """``"1,2,4"`` → (1, 2, 4); no argument gives :data:`SCALES`."""
    if argument is None:
        return SCALES
    try:
        scales = tuple(sorted({int(part) for part in argument.split(",")}))
    except ValueError:
        scales = ()
    if not scales or min(scales) < 1:
        raise InputError(f"natural-patches:{argument}: give downsampling factors, e.g. natural-patches:1,2,4")
    return scales


def cut(picture: torch.Tensor, tops: np.ndarray, lefts: np.ndarray, size: int) -> torch.Tensor:
    """The (N, 1, size, size) patches of a (H, W) picture with the given top-left corners."""
    window = np.arange(size)
    rows = torch.from_numpy(tops[:, None, None] + window[None, :, None])
    columns = torch.from_numpy(lefts[:, None, None] + window[None, None, :])
    return picture[rows, columns].unsqueeze(1)


def first_occurrences(images: torch.Tensor) -> np.ndarray:
    """Indices of the first copy of each distinct image, in order."""
    first = {}
    for index, image in enumerate(images.flatten(1).numpy()):
        first.setdefault(image.tobytes(), index)
    return np.fromiter(first.values(), dtype=np.int64)


@lru_cache(maxsize=8)
def patch_pool(split: str, size: int, scales: tuple[int, ...]) -> tuple[torch.Tensor, Info]:
    """Every distinct patch of the split's photos, ordered by photo, scale, row and column, and its
    provenance (``top`` and ``left`` in full-resolution pixels)."""
    stride = max(size // 2, 1)
    patches, provenance = [], []
    for number, name in enumerate(PHOTOS[split]):
        for scale in scales:
            picture = load_photo(name, scale)[0, 0]
            offset = np.random.default_rng([GRID_SEED, number, scale]).integers(stride, size=2)
            height, width = picture.shape
            tops, lefts = np.meshgrid(
                np.arange(offset[0], height - size + 1, stride),
                np.arange(offset[1], width - size + 1, stride),
                indexing="ij",
            )
            tops, lefts = tops.ravel(), lefts.ravel()
            patches.append(cut(picture, tops, lefts, size))
            provenance += [(name, scale, scale * top, scale * left) for top, left in zip(tops, lefts)]
    if not provenance:
        raise InputError(f"the photos are too small for {size}×{size} patches: ask for a smaller size")
    everything = torch.cat(patches)
    distinct = first_occurrences(everything)
    columns = (np.array(column)[distinct] for column in zip(*provenance))
    return everything[distinct], dict(zip(("photo", "scale", "top", "left"), columns))


class NaturalPatches:
    """The patch pool of one split."""

    def __init__(self, request: Request) -> None:
        self.patches, self.info = patch_pool(request.split, request.size, parse_scales(request.argument))

    def __len__(self) -> int:
        return len(self.patches)

    def take(self, indices: np.ndarray) -> tuple[torch.Tensor, Info]:
        info = {name: column[indices] for name, column in self.info.items()}
        return self.patches[indices], {"index": indices, **info}
