"""Checkpoint formats: detect what a path holds and load it as a Denoiser."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from biasprobe.denoiser import Denoiser
from biasprobe.errors import CheckpointError, InputError
from biasprobe.formats import dit_reference, kadkhodaie
from biasprobe.formats.diffusers import is_diffusers_folder, is_diffusers_weights, load_diffusers
from biasprobe.formats.native import FORMAT_NAME, Checkpoint, read_checkpoint, save_checkpoint
from biasprobe.formats.weights import read_safetensors, read_torch, safetensors_metadata, tensors_only

SUPPORTED = {
    "biasprobe-pt": "biasprobe checkpoint (.pt, written by `biasprobe new` / `biasprobe train`)",
    "biasprobe-safetensors": "biasprobe checkpoint (.safetensors with biasprobe metadata)",
    "diffusers": "diffusers UNet2DModel or DiT model folder (config.json) or pipeline folder (model_index.json)",
    "dit-pt": "facebookresearch DiT .pt (released weights, or a train.py checkpoint with model/ema/args)",
    "kadkhodaie-unet": "Kadkhodaie et al. bias-free UNet model.pt (state dict, `module.` prefix allowed)",
    "kadkhodaie-bf-cnn": "Kadkhodaie et al. BF_CNN model.pt (state dict, `module.` prefix allowed)",
}

LOAD_OPTIONS = {
    "diffusers": ("class_label",),
    "dit-pt": ("class_label",),
    "kadkhodaie-unet": ("image_size",),
    "kadkhodaie-bf-cnn": ("image_size",),
}
"""The keyword options of :func:`load` that apply to each format."""


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, or of a folder's files in sorted order."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def detect_format(path: str | os.PathLike) -> str:
    """The name of the format at ``path`` (a key of :data:`SUPPORTED`), told from its contents."""
    return _identify(Path(path))[0]


def _unrecognised(path: Path) -> CheckpointError:
    listing = "; ".join(SUPPORTED.values())
    return CheckpointError(
        f"{path} is not a biasprobe checkpoint nor another format biasprobe recognises. Supported: {listing}"
    )


def _identify(path: Path) -> tuple[str, dict | None]:
    """The format at ``path`` and, for a single-file state dict, the dictionary already read from it."""
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: check the path")
    if path.is_dir() or is_diffusers_weights(path):
        if is_diffusers_folder(path.parent if path.is_file() else path):
            return "diffusers", None
        raise _unrecognised(path)
    if path.suffix == ".safetensors":
        if FORMAT_NAME in safetensors_metadata(path):
            return "biasprobe-safetensors", None
        data = read_safetensors(path)
    else:
        data = read_torch(path)
        if data.get("format") == FORMAT_NAME:
            return "biasprobe-pt", None
    if dit_reference.model_state(data) is not None:
        return "dit-pt", data
    state = {k.removeprefix("module."): v for k, v in data.items() if isinstance(k, str)}
    found = kadkhodaie.detect(state)
    if found is None:
        raise _unrecognised(path)
    return found, tensors_only(state, path)


def load(
    path: str | os.PathLike,
    device: str | None = None,
    *,
    class_label: int | None = None,
    image_size: int | None = None,
) -> Denoiser:
    """Load any supported checkpoint as a ready :class:`~biasprobe.denoiser.Denoiser` (eval mode).

    ``class_label`` conditions class-conditional models (DiT: default the null class, i.e. the
    unconditional model); ``image_size`` sets the side of the images a fully convolutional
    Kadkhodaie et al. network takes (default 80). Neither applies to other formats.
    """
    path = Path(path)
    file_format, data = _identify(path)
    info = {"file_format": file_format, "path": str(path)}
    options = {"class_label": class_label, "image_size": image_size}
    applicable = LOAD_OPTIONS.get(file_format, ())
    misplaced = [name for name, value in options.items() if value is not None and name not in applicable]
    if misplaced:
        raise InputError(f"{', '.join(misplaced)} does not apply to {SUPPORTED[file_format]} files")
    chosen = {name: options[name] for name in applicable}
    if file_format == "diffusers":
        denoiser = load_diffusers(path, info, **chosen)
    elif file_format == "dit-pt":
        denoiser = dit_reference.load_dit(data, info, **chosen)
    elif file_format in kadkhodaie.FORMATS:
        denoiser = kadkhodaie.load_kadkhodaie(file_format, data, info, **chosen)
    else:
        denoiser = read_checkpoint(path).build(info=info)
    return denoiser.to(device) if device else denoiser


__all__ = ["SUPPORTED", "Checkpoint", "detect_format", "file_sha256", "load", "read_checkpoint", "save_checkpoint"]
