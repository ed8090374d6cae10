"""Images in an ``.npz`` file (``npz:PATH``): array ``train`` and optionally ``test``, each (N, H, W) or
(N, H, W, C), uint8 or float in [0, 1]; centre-cropped to a square and resized as needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from biasprobe.data.base import Info, Request, as_images, crop_square, resize
from biasprobe.errors import InputError


class NpzArray:
    """One array of an .npz file, checked on opening."""

    def __init__(self, request: Request) -> None:
        path = Path(request.argument or "").expanduser()
        if not path.is_file():
            raise InputError(f"no file at {path}: pass npz:PATH with an .npz holding a 'train' array")
        try:
            with open(path, "rb") as stream:
                archive = np.load(stream, allow_pickle=False)
                names = list(archive.files) if isinstance(archive, np.lib.npyio.NpzFile) else []
                array = archive[request.split] if request.split in names else None
        except (ValueError, OSError) as err:
            raise InputError(f"cannot read {path} as an .npz of numeric arrays: {err}") from None
        if array is None:
            raise InputError(f"{path} has no '{request.split}' array (it has {', '.join(names) or 'none'}): "
                             f"save it with np.savez(path, train=..., test=...)")
        self.array = array
        self.check(path, request.split)
        self.size = request.size

    def check(self, path: Path, split: str) -> None:
        """Refuse shapes, dtypes and values that are not images in [0, 1]."""
        where = f"{path}['{split}']"
        shape, dtype = self.array.shape, self.array.dtype
        if not (len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3))):
            raise InputError(f"{where} has shape {shape}: store (N, H, W) or (N, H, W, C) images, C 1 or 3")
        if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
            raise InputError(f"{where} is {dtype}: store uint8, or floats in [0, 1]")
        if np.issubdtype(dtype, np.floating) and self.array.size and not (
            np.isfinite(self.array).all() and self.array.min() >= 0 and self.array.max() <= 1
        ):
            raise InputError(f"{where} has values outside [0, 1]: rescale it, or store uint8")

    def __len__(self) -> int:
        return len(self.array)

    def take(self, indices: np.ndarray) -> tuple[torch.Tensor, Info]:
        return resize(crop_square(as_images(self.array[indices])), self.size), {"index": indices}
