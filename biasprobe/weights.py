"""Reading untrusted weight files safely, and loading them strictly into a network.

PyTorch files are read with ``torch.load(weights_only=True)``: only tensors and plain data
(plus ``argparse.Namespace``, allow-listed because training scripts such as DiT's ``train.py``
save their arguments as one) can come out, and no code from the file runs.
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from biasprobe.errors import CheckpointError, UnrecognisedFileError

ALLOWED_GLOBALS = [argparse.Namespace]
"""Classes beyond plain data and tensors that may be rebuilt from a PyTorch file."""


PICKLE_START = b"\x80"
"""The first byte of a pickle of protocol 2 or later: every PyTorch file that is not a zip archive
(``torch.save(..., _use_new_zipfile_serialization=False)``) starts with it."""

ZIP_START = b"PK\x03\x04"
"""The first bytes of a zip archive, PyTorch's own format (also of one cut short, which is no zip file)."""


def read_torch(path: Path) -> dict:
    """The dictionary in a PyTorch file, loaded weights-only on the CPU (memory-mapped when possible);
    a file that is neither a zip archive nor a pickle (a text file, an image) is
    :class:`~biasprobe.errors.UnrecognisedFileError`."""
    archive = zipfile.is_zipfile(path)
    with open(path, "rb") as handle:
        start = handle.read(len(ZIP_START))
    if start and not start.startswith((PICKLE_START, ZIP_START)):  # empty or cut short: torch says so below
        raise UnrecognisedFileError(f"{path} is not a readable PyTorch checkpoint: it is neither a zip archive "
                                    "nor a pickle (a text file or an image?)")
    # torch < 2.5 has no allow-list context: such files are then refused like any other object
    allow = getattr(torch.serialization, "safe_globals", None)
    try:
        with allow(ALLOWED_GLOBALS) if allow else contextlib.nullcontext(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # no news to the user
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=archive)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:
            raise CheckpointError(
                f"{path} is not a readable PyTorch checkpoint (truncated, corrupt, or a raw pickle that "
                "weights-only loading refuses)"
            ) from None
        raise CheckpointError(
            f"{path} holds Python objects ({found.group(1)}) that would need arbitrary unpickling, which "
            "biasprobe refuses; re-save only its state dict and config as plain data"
        ) from None
    except Exception as err:  # noqa: BLE001 - an untrusted file can fail the reader in any way
        reason = str(err).splitlines()[0].split(". ")[0][:120] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {reason}"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a checkpoint dictionary")
    return data


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file, read from its header only."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {err}"
        ) from None


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {err}"
        ) from None


def read_weights(path: Path) -> dict:
    """The dictionary in a ``.safetensors`` or PyTorch file."""
    return read_safetensors(path) if path.suffix == ".safetensors" else read_torch(path)


def tensors_only(data: dict, path: Path) -> dict[str, torch.Tensor]:
    """``data`` as a state dict, the ``module.`` prefix of ``nn.DataParallel`` removed."""
    if not data or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
        raise CheckpointError(f"{path} holds no state dict of named tensors")
    return {k.removeprefix("module."): v for k, v in data.items()}


def load_strictly(network: nn.Module, state: dict[str, torch.Tensor], architecture: str) -> nn.Module:
    """Load ``state`` into ``network`` (every key present, none extra, every shape equal); eval mode."""
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"weights do not match the {architecture} architecture inferred from the file "
            f"(missing {len(missing)} keys such as {missing[:3]}, unexpected {len(extra)}: {extra[:3]})"
        )
    wrong = [k for k, v in state.items() if v.shape != expected[k].shape]
    if wrong:
        raise CheckpointError(
            f"weight {wrong[0]!r} has shape {tuple(state[wrong[0]].shape)}, the inferred {architecture} takes "
            f"{tuple(expected[wrong[0]].shape)} ({len(wrong)} mismatched)"
        )
    network.load_state_dict(state)
    return network.eval()
