"""What ships in the repository's ``data/`` folder, with small loaders.

- ``data/checkpoints/``: the checkpoint zoo (trained by ``reports/zoo/train_zoo.py``, recipe
  ``reports/zoo/zoo.toml`` for ``biasprobe sweep train``; its
  ``manifest.json`` lists family, N, subset, windows, steps and sha256 of each file);
- ``data/images/``: example images (crops of scikit-image's photographs);
- ``data/fashion-mnist-eval.npz``: the first 300 images of Fashion-MNIST's S1 and S2 training
  halves and of its test split (seed 0), for gap and two-model runs without the Debian package.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from biasprobe.denoiser import Denoiser
from biasprobe.errors import InputError

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def _require(path: Path) -> Path:
    if not path.exists():
        raise InputError(f"{path} is missing: the shipped data lives in the source tree; install with `pip install -e .`")
    return path


def manifest() -> list[dict]:
    """One entry per shipped checkpoint (name, file, family, n_train, subset, windows, steps_done, sha256)."""
    return json.loads(_require(DATA_DIR / "checkpoints" / "manifest.json").read_text())["checkpoints"]


def checkpoint_path(name: str) -> Path:
    """The file of the shipped checkpoint ``name``."""
    entries = {entry["name"]: entry for entry in manifest()}
    if name not in entries:
        raise InputError(f"no shipped checkpoint {name!r}; there are {', '.join(entries)}")
    return _require(DATA_DIR / "checkpoints" / entries[name]["file"])


def load_checkpoint(name: str, device: str | None = None) -> Denoiser:
    """The shipped checkpoint ``name`` as a Denoiser."""
    from biasprobe.formats import load

    return load(checkpoint_path(name), device=device)


def image_path(name: str) -> Path:
    """An example image of ``data/images/`` by file stem, e.g. ``camera-32``."""
    return _require(DATA_DIR / "images" / f"{name}.png")


def example_images(shape: tuple[int, int, int] | None = None) -> list[Path]:
    """The shipped example images: all, or those fitting ``shape`` = (C, H, W).

    For a shape: those of its channel count (any, if none has it), of its exact size where some
    are, else of the smallest size shipped (to be resized by the reader).
    """
    paths = sorted(_require(DATA_DIR / "images").glob("*.png"))
    if shape is None or not paths:
        return paths
    from PIL import Image

    channels, height, width = shape
    candidates = {}
    for path in paths:
        with Image.open(path) as picture:
            candidates[path] = (picture.mode, picture.size)
    mode = "L" if channels == 1 else "RGB"
    chosen = [path for path, (kind, _) in candidates.items() if kind == mode] or paths
    sizes = {candidates[path][1] for path in chosen}
    size = (width, height) if (width, height) in sizes else min(sizes)
    return [path for path in chosen if candidates[path][1] == size]


def evaluation_names(part: str, count: int) -> list[str]:
    """Names of the first ``count`` images of :func:`evaluation_images` ``(part)``, as a store records which
    images it used: ``fashion-mnist-eval.npz:test[7]``."""
    return [f"fashion-mnist-eval.npz:{part}[{i}]" for i in range(count)]


def evaluation_images(part: str) -> torch.Tensor:
    """300 Fashion-MNIST images as (300, 1, 32, 32) in [0, 1]: ``train_s1``, ``train_s2`` or ``test``."""
    with np.load(_require(DATA_DIR / "fashion-mnist-eval.npz"), allow_pickle=False) as arrays:
        if part not in arrays:
            raise InputError(f"unknown part {part!r}; use one of {', '.join(arrays.files)}")
        return torch.from_numpy(arrays[part][:, None].astype(np.float32) / 255)
