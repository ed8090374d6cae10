"""Fashion-MNIST (Xiao et al. 2017) from the IDX files of the Debian package ``dataset-fashion-mnist``.

28×28 grey images zero-padded to 32×32 (2 pixels each side); its own 60 000 / 10 000 train / test split.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from biasprobe.data.base import Info, Request, as_images, resize
from biasprobe.errors import InputError

DEBIAN_ROOT = Path("/usr/share/datasets")
"""Where Debian's dataset-* packages install, this one in its ``fashion-mnist/`` folder."""
ENVIRONMENT_VARIABLE = "BIASPROBE_DATA_DIR"
FILE_PREFIX = {"train": "train", "test": "t10k"}
PADDING = 2


def find_directory(data_dir: Path | None) -> Path:
    """The first of ``data_dir``, ``$BIASPROBE_DATA_DIR`` and the Debian location holding the IDX files,
    each tried as is and with a ``fashion-mnist/`` subfolder. A ``data_dir`` given that holds none is
    an error (no fall-back to another copy the user did not ask for)."""
    if data_dir is not None:
        for directory in (Path(data_dir), Path(data_dir) / "fashion-mnist"):
            if find_file(directory, "train-images-idx3-ubyte") is not None:
                return directory
        raise InputError(
            f"Fashion-MNIST not found in {data_dir} (nor in its fashion-mnist/ subfolder): pass as " + "{data_dir} the "
            "folder holding train-images-idx3-ubyte.gz and its siblings, or run `apt-get install "
            "dataset-fashion-mnist` and leave out {data_dir}",
            parameters={"data_dir": "data_dir="},
        )
    roots = []
    if os.environ.get(ENVIRONMENT_VARIABLE):
        roots.append(Path(os.environ[ENVIRONMENT_VARIABLE]))
    roots.append(DEBIAN_ROOT)
    for root in roots:
        for directory in (Path(root), Path(root) / "fashion-mnist"):
            if find_file(directory, "train-images-idx3-ubyte") is not None:
                return directory
    raise InputError(
        "Fashion-MNIST not found: run `apt-get install dataset-fashion-mnist` or pass {data_dir}, "
        "a folder holding train-images-idx3-ubyte.gz and its siblings",
        parameters={"data_dir": "data_dir="},
    )


def find_file(directory: Path, stem: str) -> Path | None:
    """``stem.gz`` or ``stem`` in ``directory``, if either exists."""
    return next((path for path in (directory / f"{stem}.gz", directory / stem) if path.is_file()), None)


@lru_cache(maxsize=4)
def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) of unsigned bytes as an array of its declared shape."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as stream:
        raw = stream.read()
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise InputError(f"{path} is not an IDX file of unsigned bytes: reinstall dataset-fashion-mnist")
    rank = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=rank, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank)
    if data.size != np.prod(shape):
        raise InputError(f"{path} is truncated: reinstall dataset-fashion-mnist")
    return data.reshape(shape)


class FashionMNIST:
    """One split, read lazily: only the requested images are padded and converted."""

    def __init__(self, request: Request) -> None:
        directory = find_directory(request.data_dir)
        prefix = FILE_PREFIX[request.split]
        image_file = find_file(directory, f"{prefix}-images-idx3-ubyte")
        label_file = find_file(directory, f"{prefix}-labels-idx1-ubyte")
        if image_file is None or label_file is None:
            raise InputError(f"{directory} lacks the Fashion-MNIST {request.split} files: reinstall it")
        self.images, self.labels = read_idx(image_file), read_idx(label_file)
        self.size = request.size

    def __len__(self) -> int:
        return len(self.images)

    def take(self, indices: np.ndarray) -> tuple[torch.Tensor, Info]:
        padded = np.pad(self.images[indices], ((0, 0), (PADDING, PADDING), (PADDING, PADDING)))
        return resize(as_images(padded), self.size), {"index": indices, "label": self.labels[indices]}
