"""Checkpoint formats: detect what a path holds and load it as a Denoiser."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from biasprobe.denoiser import Denoiser
from biasprobe.errors import CheckpointError
from biasprobe.formats.native import Checkpoint, read_checkpoint, save_checkpoint

SUPPORTED = {
    "biasprobe-pt": "biasprobe checkpoint (.pt, written by `biasprobe new` / `biasprobe train`)",
    "biasprobe-safetensors": "biasprobe checkpoint (.safetensors with biasprobe metadata)",
}


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
    """The name of the format at ``path`` (a key of :data:`SUPPORTED`)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: check the path")
    if path.is_file() and path.suffix == ".safetensors":
        return "biasprobe-safetensors"
    if path.is_file():
        return "biasprobe-pt"
    listing = "; ".join(SUPPORTED.values())
    raise CheckpointError(f"{path} is not a checkpoint biasprobe recognises. Supported: {listing}")


def load(path: str | os.PathLike, device: str | None = None) -> Denoiser:
    """Load any supported checkpoint as a ready :class:`~biasprobe.denoiser.Denoiser` (eval mode)."""
    file_format = detect_format(path)
    denoiser = read_checkpoint(path).build(info={"file_format": file_format, "path": str(path)})
    return denoiser.to(device) if device else denoiser


__all__ = ["SUPPORTED", "Checkpoint", "detect_format", "file_sha256", "load", "read_checkpoint", "save_checkpoint"]
