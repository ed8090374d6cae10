"""Data sets as (N, C, H, W) float32 tensors in [0, 1]: offline, deterministic, with nested seeded subsets.

>>> from biasprobe import data
>>> s1 = data.load("fashion-mnist", n=1000)               # first 1000 of the S1 half of the train split
>>> s2 = data.load("fashion-mnist", n=1000, subset="s2")  # its disjoint twin, for the two-model test
>>> test = data.load("natural-patches", "test", n=500)    # patches of photos no training patch comes from
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import numpy as np
import torch

from biasprobe.data.base import Images, Info, Request, to_channels
from biasprobe.data.fashion_mnist import FashionMNIST
from biasprobe.data.folder import Folder
from biasprobe.data.natural_patches import NaturalPatches
from biasprobe.data.npz import NpzArray
from biasprobe.data.synthetic import c_alpha, discs
from biasprobe.errors import InputError

__all__ = ["describe", "held_out_set", "load", "names", "training_set"]

SPLITS = ("train", "test")
SUBSETS = ("s1", "s2", "all")


@dataclass(frozen=True)
class Source:
    """A registered data set: one line of description, and how to open one of its splits."""

    summary: str
    open: Callable[[Request], Images]
    argument: Literal["none", "optional", "required"] = "none"


SOURCES = {
    "fashion-mnist": Source(
        "Fashion-MNIST, 28×28 grey clothing zero-padded to 32×32; 60000 train / 10000 test "
        "(Debian package dataset-fashion-mnist)",
        FashionMNIST,
    ),
    "natural-patches": Source(
        "grey patches of scikit-image's bundled photographs at scales 1, 2, 4 (natural-patches:1,2 picks "
        "scales); train and test patches come from different photos",
        NaturalPatches,
        "optional",
    ),
    "c-alpha": Source(
        "synthetic, infinite: a C^α boundary between two smoothly shaded regions "
        "(c-alpha:0.5 sets α, default 1)",
        c_alpha,
        "optional",
    ),
    "discs": Source("synthetic, infinite: 1 to 4 random discs over a uniform background", discs),
    "folder": Source(
        "PNG/JPEG files of folder:PATH (train/ and test/ subfolders, or all train), "
        "centre-cropped and resized",
        Folder,
        "required",
    ),
    "npz": Source(
        "arrays 'train' and optionally 'test' of npz:PATH, uint8 or floats in [0, 1]", NpzArray, "required"
    ),
}


def names() -> list[str]:
    """The built-in data sets (``folder:PATH`` and ``npz:PATH`` read the user's own files)."""
    return [name for name, source in SOURCES.items() if source.argument != "required"]


def parse(name: str) -> tuple[Source, str | None]:
    """The source a name refers to, and the argument after its ``:`` if any."""
    key, _, argument = name.partition(":")
    if key not in SOURCES:
        known = ", ".join(names())
        raise InputError(f"unknown data set {name!r}: choose one of {known}, folder:PATH or npz:PATH")
    source = SOURCES[key]
    if source.argument == "required" and not argument:
        raise InputError(f"{key} needs a path: write {key}:PATH")
    if source.argument == "none" and argument:
        raise InputError(f"{key} takes no argument: write {key!r}, not {name!r}")
    return source, argument or None


def describe(name: str) -> str:
    """One line saying what ``name`` loads."""
    return f"{name}: {parse(name)[0].summary}"


def select(images: Images, name: str, split: str, subset: str, n: int | None, seed: int) -> np.ndarray:
    """Indices of the images to take: a prefix of the split's seeded permutation (finite sets), or of
    the stream of generator indices (infinite families, where S1 takes the even and S2 the odd ones)."""
    if split == "test" and subset == "s2":
        raise InputError("subsets halve the train split only: use subset='s1' or 'all' with split='test'")
    if not isinstance(images, Sized):
        if n is None:
            raise InputError(f"{name} is an infinite family: pass n, the number of images")
        stream = np.arange(n)
        return stream if split == "test" or subset == "all" else 2 * stream + int(subset == "s2")
    order = np.random.default_rng(seed).permutation(len(images))
    if split == "train" and subset != "all":
        half = len(order) // 2
        order = order[:half] if subset == "s1" else order[half : 2 * half]
    if n is not None and n > len(order):
        part = f"the {split} split" if split == "test" or subset == "all" else f"train subset {subset}"
        raise InputError(f"{name}: {part} holds {len(order)} images, not {n}: ask for at most {len(order)}")
    return order[:n]


@overload
def load(
    name: str, split: str = ..., n: int | None = ..., *, size: int = ..., channels: int | None = ...,
    subset: str = ..., seed: int = ..., data_dir: str | os.PathLike | None = ...,
    return_info: Literal[False] = ...,
) -> torch.Tensor: ...
@overload
def load(
    name: str, split: str = ..., n: int | None = ..., *, size: int = ..., channels: int | None = ...,
    subset: str = ..., seed: int = ..., data_dir: str | os.PathLike | None = ...,
    return_info: Literal[True],
) -> tuple[torch.Tensor, Info]: ...
def load(
    name: str,
    split: str = "train",
    n: int | None = None,
    *,
    size: int = 32,
    channels: int | None = None,
    subset: str = "s1",
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    return_info: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, Info]:
    """``n`` images (all of the subset if None) of data set ``name`` as (n, C, size, size) float32 in [0, 1].

    The split is permuted with ``seed`` and halved: ``subset="s1"`` draws from the first half, ``"s2"``
    from the second (disjoint) half, ``"all"`` from the whole; the test split is never halved. The first
    ``n`` are taken, so smaller subsets are prefixes of larger ones. Synthetic families are infinite: image
    ``i`` depends on ``(seed, split, i)`` only, and S1 / S2 take the even / odd ``i``. ``channels`` turns
    grey into copies or colour into luma; ``data_dir`` says where on-disk sets (fashion-mnist) live. With
    ``return_info``, also a dict of per-image provenance arrays (``index`` in the split or stream, and
    per-source columns such as ``photo`` for natural-patches or ``label`` for fashion-mnist).
    """
    source, argument = parse(name)
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}: use 'train' or 'test'")
    if subset not in SUBSETS:
        raise InputError(f"unknown subset {subset!r}: use 's1', 's2' or 'all'")
    for label, value, least in (("size", size, 1), ("seed", seed, 0), ("n", 0 if n is None else n, 0)):
        if not isinstance(value, (int, np.integer)) or value < least:
            raise InputError(f"{label} must be an integer ≥ {least}, not {value!r}")
    if channels not in (None, 1, 3):
        raise InputError(f"channels must be 1 or 3, not {channels!r}")
    request = Request(split, int(size), int(seed), None if data_dir is None else Path(data_dir), argument)
    images = source.open(request)
    chosen, info = images.take(select(images, name, split, subset, n, int(seed)))
    chosen = to_channels(chosen, channels)
    return (chosen, info) if return_info else chosen


def training_set(
    training: Mapping[str, object],
    image_shape: Sequence[int],
    name: str | None = None,
    n_train: int | None = None,
    data_dir: str | os.PathLike | None = None,
) -> tuple[str, torch.Tensor]:
    """The images a model was trained on, from the ``training`` metadata its checkpoint records
    (``data``, ``n_train``, ``subset``, ``seed``; see :attr:`biasprobe.denoiser.CheckpointSource.training`),
    at its ``image_shape`` (C, H, W); ``name`` and ``n_train`` override or supply what is not recorded."""
    name = name or training.get("data")
    n_train = n_train or training.get("n_train")
    if not name or not n_train:
        raise InputError("this checkpoint does not record its training data: give the data set ({data}) and "
                         "its size N ({n_train})", parameters={"data": "name", "n_train": "n_train"})
    channels, size, _ = image_shape
    images = load(str(name), "train", int(n_train), size=size, channels=channels,
                  subset=str(training.get("subset", "s1")), seed=int(training.get("seed", 0)), data_dir=data_dir)
    return str(name), images


def held_out_set(name: str, image_shape: Sequence[int], count: int, data_dir: str | os.PathLike | None = None):
    """The first ``count`` test-split images of data set ``name`` at ``image_shape`` (C, H, W)."""
    channels, size, _ = image_shape
    return load(name, "test", count, size=size, channels=channels, subset="all", data_dir=data_dir)
